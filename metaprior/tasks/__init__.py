"""Task families: many related minimisation problems over one box."""

from metaprior.tasks.family import Task, TaskBatch, TaskFamily
from metaprior.tasks.mismatch import mismatched_tasks
from metaprior.tasks.mixed import MIXED_SPACE, MixedTraining
from metaprior.tasks.registry import (
    BUILTIN_FAMILIES,
    TYPED_SUFFIX,
    YAHPO_SCENARIOS,
    family_names,
    get_family,
)
from metaprior.tasks.synthetic import (
    Branin,
    Forrester,
    FunctionFamily,
    Hartmann,
    Logistic,
    Sinusoid,
)
from metaprior.tasks.table import TableFamily

__all__ = [
    "BUILTIN_FAMILIES",
    "Branin",
    "Forrester",
    "FunctionFamily",
    "Hartmann",
    "Logistic",
    "MIXED_SPACE",
    "MixedTraining",
    "Sinusoid",
    "TableFamily",
    "Task",
    "TaskBatch",
    "TaskFamily",
    "TYPED_SUFFIX",
    "YAHPO_SCENARIOS",
    "family_names",
    "get_family",
    "mismatched_tasks",
]
