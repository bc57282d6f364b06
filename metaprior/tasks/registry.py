"""Every family known by name, in one place: for the command line, the service and the benchmarks.

Three kinds of name:
- the built-in synthetic families (`BUILTIN_FAMILIES`), e.g. "branin";
- the YAHPO Gym scenarios (`YAHPO_SCENARIOS`), e.g. "lcbench": a box over the scenario's
  hyperparameters (`YahpoFamily`);
- "<scenario>-typed", e.g. "lcbench-typed": the same scenario over its real typed search space
  (`YahpoTypedFamily`).

The YAHPO families are imported only when one is asked for: they need the optional onnxruntime
(and ConfigSpace for the typed ones) and a data folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from metaprior.errors import TaskFamilyError
from metaprior.tasks.family import TaskFamily
from metaprior.tasks.mixed import MixedTraining
from metaprior.tasks.synthetic import Branin, Forrester, Hartmann, Logistic, Sinusoid
from metaprior.tasks.yahpo import SCENARIOS

BUILTIN_FAMILIES: dict[str, Callable[[], TaskFamily]] = {
    "logistic": Logistic,
    "sinusoid": Sinusoid,
    "forrester": Forrester,
    "branin": Branin,
    "hartmann3": lambda: Hartmann(3),
    "hartmann6": lambda: Hartmann(6),
    "mixed": MixedTraining,
}
# metaprior.tasks.yahpo holds the scenarios' descriptions and imports onnxruntime only when a
# surrogate is built, so the names come from there without the optional dependency.
YAHPO_SCENARIOS: tuple[str, ...] = tuple(SCENARIOS)
TYPED_SUFFIX = "-typed"


# Built-ins over a typed space (`family.space` is not a box).
TYPED_BUILTINS = ("mixed",)


def family_names(yahpo: bool = True, typed: bool = True) -> list[str]:
    """The names `get_family` knows: built-ins, then the YAHPO scenarios as boxes, then
    "<scenario>-typed". `yahpo=False` leaves out every YAHPO family; `typed=False` every family
    over a typed space ("mixed" and "<scenario>-typed"), keeping the boxes."""
    names = [n for n in BUILTIN_FAMILIES if typed or n not in TYPED_BUILTINS]
    if yahpo:
        names += list(YAHPO_SCENARIOS)
        if typed:
            names += [s + TYPED_SUFFIX for s in YAHPO_SCENARIOS]
    return names


def get_family(name: str, yahpo_dir: str | os.PathLike | None = None) -> TaskFamily:
    """The family called `name` (case-insensitive; see the module docstring).

    `yahpo_dir` is the YAHPO data folder for the YAHPO families (default
    `$METAPRIOR_YAHPO_DATA`); the built-ins ignore it. An unknown name, a missing data folder or
    a missing optional dependency raise `TaskFamilyError`.
    """
    key = str(name).lower()
    if key in BUILTIN_FAMILIES:
        return BUILTIN_FAMILIES[key]()
    scenario = key.removesuffix(TYPED_SUFFIX)
    if scenario not in YAHPO_SCENARIOS:
        raise TaskFamilyError(
            f"unknown family {name!r}; built-in families are {sorted(BUILTIN_FAMILIES)}; YAHPO "
            f"scenarios: {list(YAHPO_SCENARIOS)} (a box) or with {TYPED_SUFFIX!r} (typed space)"
        )
    try:
        if key.endswith(TYPED_SUFFIX):
            from metaprior.tasks.yahpo_typed import YahpoTypedFamily

            return YahpoTypedFamily(scenario, data_dir=yahpo_dir)
        from metaprior.tasks.yahpo import YahpoFamily

        return YahpoFamily(scenario, data_dir=yahpo_dir)
    except ImportError as e:
        raise TaskFamilyError(f"family {name!r} needs an optional dependency: {e}") from None
