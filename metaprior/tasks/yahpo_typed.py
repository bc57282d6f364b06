"""A YAHPO scenario over its real typed search space (log floats, integers, categoricals).

`YahpoFamily` exposes a scenario as a box (log10 coordinates, integers rounded when evaluated,
other categoricals fixed). `YahpoTypedFamily` is the same scenario as a user meets it: the
parameters of its `config_space.json` (read by `SearchSpace.from_configspace`, so ConfigSpace
is needed), minus the instance and the fidelities, so rbv2_rpart keeps its imputation method as a
categorical. Its tasks take the space's encoded points (`space.model_bounds`); the table and the
held-out tasks are built as `YahpoFamily`'s, and each held-out task's minimum comes from a strong
search on the surrogate (`surrogate_search.search_minimum`), not from the best of random
points.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metaprior.errors import TaskFamilyError
from metaprior.space import SearchSpace
from metaprior.tasks.family import Task, make_generator
from metaprior.tasks.surrogate_search import search_minimum
from metaprior.tasks.table import TableFamily
from metaprior.tasks.yahpo import TEST_INSTANCES, YahpoSurrogate
from metaprior.typed_acquisition import project_model_points


def typed_space(surrogate: YahpoSurrogate) -> SearchSpace:
    """The scenario's config space without its instance and fidelity parameters."""
    spec = surrogate.spec
    full = SearchSpace.from_configspace(surrogate.data_dir / surrogate.scenario / "config_space.json")
    dropped = {spec.instance_param, *spec.fidelities}
    return SearchSpace([p for p in full.parameters if p.name not in dropped])


def random_configurations(space: SearchSpace, n: int, generator: torch.Generator) -> Tensor:
    """`n x D` valid encoded points: each parameter uniform in its encoded range (a categorical's
    level uniform), integers rounded in raw space."""
    U = torch.rand(n, space.encoded_dim, generator=generator, dtype=torch.float64)
    return project_model_points(space, U)


class YahpoTypedFamily(TableFamily):
    """A YAHPO scenario over its typed space: a table of random runs plus evaluable test tasks.

    Args:
        scenario: "lcbench" or "rbv2_rpart".
        data_dir: the yahpo_data folder.
        n_random: random configurations per instance in the table.
        seed: seed of the table's configurations.
        n_dense: random configurations per test instance for its `y_max` and the start of the
            search for its minimum.
    """

    def __init__(self, scenario: str, data_dir: str | os.PathLike | None = None,
                 n_random: int = 200, seed: int = 0, n_dense: int = 20_000):
        if int(n_random) < 2:
            raise TaskFamilyError(f"n_random must be >= 2 points per instance (got {n_random})")
        self.surrogate = sur = YahpoSurrogate(scenario, data_dir)
        space = typed_space(sur)
        self.n_random, self.seed, self.n_dense = int(n_random), int(seed), int(n_dense)
        U = torch.cat([
            random_configurations(space, self.n_random,
                                  make_generator(seed, "yahpo-typed-table", scenario, inst))
            for inst in sur.instances
        ])
        runs = space.decode(U)
        names = [inst for inst in sur.instances for _ in range(self.n_random)]
        runs["objective"] = self._objective(names, runs).numpy()
        runs.insert(0, "instance", names)
        table = TableFamily.from_dataframe(runs, task="instance", space=space, output="objective",
                                           test_tasks=list(TEST_INSTANCES[scenario]),
                                           name=f"{scenario}-typed", shuffle_seed=seed)
        super().__init__(table.X, table.Y, table.task_names, table.counts, table.bounds,
                         TEST_INSTANCES[scenario], name=table.name, input_names=space.names,
                         space=space)
        self._y_range: dict[str, tuple[float, float]] = {}

    def _objective(self, instances: list[str], runs: pd.DataFrame) -> Tensor:
        """The minimised objective of raw configurations `runs` (`n` rows, row i on
        `instances[i]`): `n`."""
        sur = self.surrogate
        codes = torch.tensor([sur.instance_code(i) for i in instances], dtype=torch.int64)
        numeric = {n: runs[n].to_numpy(dtype=np.float64) for n in sur.param_names}
        cats = np.empty((len(runs), len(sur.spec.fixed_cats)), dtype=np.int32)
        for j, (name, level) in enumerate(sur.spec.fixed_cats):
            levels = runs[name].astype(str) if name in runs.columns else pd.Series([level] * len(runs))
            cats[:, j] = [int(sur.encoding[name][v]) for v in levels]
        return sur.objective_from_outputs(sur.run_raw(codes, numeric, cats))

    def evaluate(self, instance: str, U: Tensor) -> Tensor:
        """The objective on `instance` at encoded points `U` (`n x D`, projected first): `n`."""
        runs = self.space.decode(project_model_points(self.space, torch.as_tensor(U)))
        return self._objective([str(instance)] * len(runs), runs)

    def test_instances(self) -> list[str]:
        """The held-out instances, numerically sorted."""
        return sorted(self.tasks("test"), key=int)

    def y_range(self, instance: str) -> tuple[float, float]:
        """(minimum found by `search_minimum` from `n_dense` random configurations, their max)."""
        if instance not in self._y_range:
            g = make_generator(0, "yahpo-typed-dense", self.name, instance)
            U = random_configurations(self.space, self.n_dense, g)
            y = self.evaluate(instance, U)
            best = search_minimum(lambda V: self.evaluate(instance, V), self.space, U, y)
            self._y_range[instance] = (best, float(y.max()))
        return self._y_range[instance]

    def held_out_tasks(self, n_tasks: int, seed: int = 0) -> list[Task]:
        """The first `n_tasks` test instances (numerically sorted) as tasks over encoded points.

        The tasks are the same for every `seed` (a fixed split).
        """
        if int(n_tasks) < 1:
            raise TaskFamilyError(f"n_tasks must be >= 1 (got {n_tasks})")
        tasks = []
        for inst in self.test_instances()[: int(n_tasks)]:
            lo, hi = self.y_range(inst)
            tasks.append(Task(name=f"{self.name}/{inst}",
                              fn=lambda U, inst=inst: self.evaluate(inst, U),
                              bounds=self.bounds.clone(), y_min=lo, y_max=hi))
        return tasks
