"""Built-in families by name, for the command line and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable

from metaprior.errors import TaskFamilyError
from metaprior.tasks.family import TaskFamily
from metaprior.tasks.mixed import MixedTraining
from metaprior.tasks.synthetic import Branin, Forrester, Hartmann, Logistic, Sinusoid

BUILTIN_FAMILIES: dict[str, Callable[[], TaskFamily]] = {
    "logistic": Logistic,
    "sinusoid": Sinusoid,
    "forrester": Forrester,
    "branin": Branin,
    "hartmann3": lambda: Hartmann(3),
    "hartmann6": lambda: Hartmann(6),
    "mixed": MixedTraining,
}


def get_family(name: str) -> TaskFamily:
    """The built-in family called `name` (case-insensitive)."""
    key = str(name).lower()
    if key not in BUILTIN_FAMILIES:
        raise TaskFamilyError(
            f"unknown family {name!r}; built-in families are {sorted(BUILTIN_FAMILIES)}"
        )
    return BUILTIN_FAMILIES[key]()
