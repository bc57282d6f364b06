"""Real HPO task families from YAHPO Gym's ONNX surrogates (optional extra `metaprior[yahpo]`).

A YAHPO scenario is one ONNX network, fitted on real OpenML runs, that predicts the metrics of a
configuration on each dataset ("instance"). One instance is one task of a family, which makes the
scenarios a transfer-BO benchmark with real structure. Supported: `lcbench` (7-D, 34 instances)
and `rbv2_rpart` (4-D, 117 instances). Data: the public repository slds-lmu/yahpo_data (v1.0.2);
pass its folder, or set `METAPRIOR_YAHPO_DATA`.

Exposed search space (the family's `bounds`, "unit-free"): the scenario's non-fidelity
hyperparameters, in `config_space.json` order restricted to the search space; a log-scale
parameter is exposed as log10 of its value, an integer one is rounded when evaluated. Fidelities
are fixed at their maxima. The objective is minimised: lcbench `val_cross_entropy`, rbv2_rpart
`1 - acc`. See docs/yahpo.md.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metaprior.errors import InputDataError, OutOfBoundsWarning, TaskFamilyError
from metaprior.space import SearchSpace, box_from_unit, box_to_unit
from metaprior.tasks.family import Task, make_generator
from metaprior.tasks.surrogate_search import search_minimum
from metaprior.tasks.table import TableFamily

ENV_VAR = "METAPRIOR_YAHPO_DATA"
# Rows per ONNX call: large enough to amortise the call, small enough to bound memory.
_CHUNK = 16384
# The search for a held-out task's y*: from the `n_starts` (32) best of the `n_dense` random
# points, 3 global then 3 refining sweeps (`surrogate_search`). Measured on 18 held-out
# instances, 120,000 random points instead of 20,000 gave the same y*; more starts and finer
# steps lowered it (by up to 5%). About 1.2-1.9 s (rbv2_rpart) and 2.3-3.4 s (lcbench) per
# instance on one CPU thread.
Y_STARTS = 32
Y_REFINE = 3
# (data folder, scenario, instance, n_dense, n_starts, refine) -> (y_min, y_max) of a held-out
# task, shared by every family object of the process: a benchmark worker may build its own.
_Y_RANGES: dict[tuple[str, str, str, int, int, int], tuple[float, float]] = {}


@dataclass(frozen=True)
class _Scenario:
    """Static description of one YAHPO scenario (column orders from yahpo_gym 1.0.2)."""

    instance_param: str
    cat_names: tuple[str, ...]  # columns of the int32 input `x_cat`, in order
    cont_names: tuple[str, ...]  # columns of the float32 input `x_cont`, in order
    output_names: tuple[str, ...]
    search_space: tuple[str, ...]  # exposed (non-fidelity) parameters, in exposed column order
    fidelities: tuple[str, ...]  # fixed at their config-space maximum
    fixed_cats: tuple[tuple[str, str], ...]  # other categorical inputs held at one level
    objective: str
    negate_from_one: bool  # objective = 1 - output (accuracy -> error)


SCENARIOS: dict[str, _Scenario] = {
    "lcbench": _Scenario(
        instance_param="OpenML_task_id",
        cat_names=("OpenML_task_id",),
        cont_names=("epoch", "batch_size", "learning_rate", "momentum", "weight_decay",
                    "num_layers", "max_units", "max_dropout"),
        output_names=("time", "val_accuracy", "val_cross_entropy", "val_balanced_accuracy",
                      "test_cross_entropy", "test_balanced_accuracy"),
        search_space=("batch_size", "learning_rate", "momentum", "weight_decay", "num_layers",
                      "max_units", "max_dropout"),
        fidelities=("epoch",),
        fixed_cats=(),
        objective="val_cross_entropy",
        negate_from_one=False,
    ),
    "rbv2_rpart": _Scenario(
        instance_param="task_id",
        cat_names=("task_id", "num.impute.selected.cpo"),
        cont_names=("cp", "maxdepth", "minbucket", "minsplit", "trainsize", "repl"),
        output_names=("acc", "bac", "auc", "brier", "f1", "logloss", "timetrain",
                      "timepredict", "memory"),
        search_space=("cp", "maxdepth", "minbucket", "minsplit"),
        fidelities=("trainsize", "repl"),
        # The pipeline's numeric imputation is a real (categorical) hyperparameter; we hold it at
        # its config-space default rather than "#na#" (code 0), which the surrogate never saw
        # as a chosen level.
        fixed_cats=(("num.impute.selected.cpo", "impute.mean"),),
        objective="acc",
        negate_from_one=True,
    ),
}

# Held-out instances: every 4th instance id in numerically sorted order, starting with the first
# (index 0, 4, 8, ...). Written out so that the split never moves, whatever the data's order.
TEST_INSTANCES: dict[str, tuple[str, ...]] = {
    "lcbench": (
        "3945", "126026", "167149", "167181", "167200", "168331", "168910", "189866",
        "189908",
    ),
    "rbv2_rpart": (
        "3", "14", "22", "29", "38", "50", "181", "307", "377", "554", "1053", "1068", "1461",
        "1475", "1480", "1489", "1501", "4134", "4538", "23512", "40499", "40685", "40927",
        "40979", "40984", "41138", "41150", "41161", "41165", "41212",
    ),
}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The YAHPO data folder: `data_dir`, else `$METAPRIOR_YAHPO_DATA`.

    Raises `TaskFamilyError` naming the path when the folder does not exist, and saying how to
    give one when neither is set (an installed package has no repository to look beside).
    """
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or None
    if data_dir is None:
        raise TaskFamilyError(
            f"no YAHPO data folder given: pass data_dir= (--yahpo-data / --data-dir on the "
            f"command line), or set {ENV_VAR} to a clone of https://github.com/slds-lmu/yahpo_data"
        )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise TaskFamilyError(f"YAHPO data folder {str(path)!r} does not exist or is not a folder")
    return path


def _check_scenario(scenario: str) -> _Scenario:
    if scenario not in SCENARIOS:
        raise TaskFamilyError(
            f"unknown YAHPO scenario {scenario!r}; supported: {sorted(SCENARIOS)}"
        )
    return SCENARIOS[scenario]


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:  # the extra is optional: say how to get it
        raise ImportError(
            "YAHPO families need onnxruntime: pip install 'metaprior[yahpo]' (or onnxruntime)"
        ) from e
    return onnxruntime


class YahpoSurrogate:
    """One YAHPO scenario's surrogate, evaluated in the exposed (unit-free) search space.

    Args:
        scenario: "lcbench" or "rbv2_rpart".
        data_dir: the yahpo_data folder (see `resolve_data_dir`).

    Attributes:
        param_names: the d exposed parameters.
        bounds: `2 x d` float64 box in exposed units (log10 for log-scale parameters).
        log_scale, integer: `d` bool tensors.
        instances: the scenario's instance ids, numerically sorted.
        fidelity: {name: value} of the fixed fidelities (their maxima).
        output_names: the surrogate's outputs, in the order of `evaluate`'s columns.
    """

    def __init__(self, scenario: str, data_dir: str | os.PathLike | None = None):
        self.scenario = scenario
        self.spec = spec = _check_scenario(scenario)
        root = resolve_data_dir(data_dir)
        folder = root / scenario
        files = {k: folder / k for k in ("model.onnx", "encoding.json", "config_space.json")}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise TaskFamilyError(
                f"YAHPO data folder {str(root)!r} lacks {missing}; expected a clone of "
                "slds-lmu/yahpo_data (v1.0.2)"
            )
        self.data_dir = root
        self.encoding = json.loads(files["encoding.json"].read_text())
        hps = {h["name"]: h for h in json.loads(files["config_space.json"].read_text())[
            "hyperparameters"]}
        self.output_names = spec.output_names
        self._parse_space(hps)
        ort = _import_onnxruntime()
        opts = ort.SessionOptions()
        # Follow torch's thread setting, so that one knob bounds the CPU use of both.
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(files["model.onnx"]), opts, providers=["CPUExecutionProvider"]
        )
        self._check_session()

    def _parse_space(self, hps: dict) -> None:
        spec = self.spec
        need = [spec.instance_param, *spec.search_space, *spec.fidelities]
        absent = [n for n in need if n not in hps]
        if absent:
            raise TaskFamilyError(f"{self.scenario}: config_space.json lacks parameters {absent}")
        lo, hi, log, integer = [], [], [], []
        for n in spec.search_space:
            h = hps[n]
            low, up = float(h["lower"]), float(h["upper"])
            is_log = bool(h.get("log", False))
            lo.append(np.log10(low) if is_log else low)
            hi.append(np.log10(up) if is_log else up)
            log.append(is_log)
            integer.append(h["type"] == "uniform_int")
        self.param_names = spec.search_space
        self.bounds = torch.tensor([lo, hi], dtype=torch.float64)
        self.log_scale = torch.tensor(log)
        self.integer = torch.tensor(integer)
        self._raw_lo = torch.tensor([float(hps[n]["lower"]) for n in spec.search_space],
                                    dtype=torch.float64)
        self._raw_hi = torch.tensor([float(hps[n]["upper"]) for n in spec.search_space],
                                    dtype=torch.float64)
        self.fidelity = {n: float(hps[n]["upper"]) for n in spec.fidelities}
        # The encoding may list levels the config space does not (lcbench: 167083); the config
        # space's choices are the scenario's instances.
        choices = [str(c) for c in hps[spec.instance_param]["choices"]]
        codes = self.encoding[spec.instance_param]
        unknown = [c for c in choices if c not in codes]
        if unknown:
            raise TaskFamilyError(f"{self.scenario}: instances {unknown} are not in encoding.json")
        self.instances = tuple(sorted(choices, key=int))
        self._codes = {c: int(codes[c]) for c in choices}
        self._fixed_codes = [int(self.encoding[n][v]) for n, v in spec.fixed_cats]

    def _check_session(self) -> None:
        """The ONNX inputs must be (x_cat, x_cont) with our column counts."""
        inputs = self.session.get_inputs()
        shapes = [i.shape[-1] for i in inputs]
        want = [len(self.spec.cat_names), len(self.spec.cont_names)]
        types = [i.type for i in inputs]
        if shapes != want or types != ["tensor(int32)", "tensor(float)"]:
            raise TaskFamilyError(
                f"{self.scenario}: model.onnx inputs {[(i.name, i.shape, i.type) for i in inputs]}"
                f" do not match the expected int32[{want[0]}], float32[{want[1]}] columns"
            )
        self._input_names = [i.name for i in inputs]
        n_out = self.session.get_outputs()[0].shape[-1]
        if n_out != len(self.output_names):
            raise TaskFamilyError(
                f"{self.scenario}: model.onnx has {n_out} outputs, expected "
                f"{len(self.output_names)} {list(self.output_names)}"
            )

    @property
    def dim(self) -> int:
        return len(self.param_names)

    def instance_code(self, instance: str | int) -> int:
        """The integer code of `instance`, or `TaskFamilyError` naming it."""
        key = str(instance)
        if key not in self._codes:
            raise TaskFamilyError(
                f"{self.scenario} has no instance {instance!r}; instances are "
                f"{list(self.instances)}"
            )
        return self._codes[key]

    def _check_X(self, X: Tensor) -> Tensor:
        X = torch.as_tensor(X, dtype=torch.float64).cpu()
        if X.ndim != 2 or X.shape[-1] != self.dim:
            raise InputDataError(
                f"{self.scenario} expects X of shape n x {self.dim} {list(self.param_names)} "
                f"(got {tuple(X.shape)})"
            )
        if not torch.isfinite(X).all():
            raise InputDataError(f"X has NaN or inf values: {X[~torch.isfinite(X).all(1)][:3]}")
        lo, hi = self.bounds
        tol = 1e-9 * (hi - lo)
        out = ((X < lo - tol) | (X > hi + tol)).any(1)
        if out.any():
            warnings.warn(
                f"{int(out.sum())} points lie outside the {self.scenario} bounds "
                f"{self.bounds.tolist()} (first {X[out][0].tolist()}); they are clamped",
                OutOfBoundsWarning, stacklevel=3,
            )
        return X.clamp(lo, hi)

    def to_raw(self, X: Tensor) -> Tensor:
        """Exposed `n x d` points -> raw hyperparameter values `n x d` (10**x, ints rounded)."""
        raw = torch.where(self.log_scale, 10.0 ** X, X)
        raw = torch.where(self.integer, raw.round(), raw)
        # Rounding and 10** never leave the box by more than float error, but clamp exactly.
        return torch.maximum(torch.minimum(raw, self._raw_hi), self._raw_lo)

    def canonicalize(self, X: Tensor) -> Tensor:
        """Exposed `n x d` points -> the exposed points actually evaluated (integers rounded)."""
        raw = self.to_raw(torch.as_tensor(X, dtype=torch.float64))
        return torch.where(self.log_scale, torch.log10(raw), raw)

    def _run(self, codes: Tensor, X: Tensor) -> Tensor:
        """Surrogate outputs `n x n_outputs` (float64) for instance codes `n` at exposed `X`."""
        raw = self.to_raw(X).numpy()
        fixed = np.tile(np.asarray(self._fixed_codes, dtype=np.int32), (X.shape[0], 1))
        return self.run_raw(codes, {n: raw[:, j] for j, n in enumerate(self.param_names)}, fixed)

    def run_raw(self, codes: Tensor, numeric: dict[str, np.ndarray], cats: np.ndarray) -> Tensor:
        """Surrogate outputs `n x n_outputs` (float64) from raw values.

        Args:
            codes: `n` instance codes.
            numeric: the search space's numeric parameters, name -> `n` raw values.
            cats: `n x c` integer codes of the other categorical inputs, in `spec.cat_names`
                order after the instance.
        """
        n = codes.shape[0]
        cont = np.empty((n, len(self.spec.cont_names)), dtype=np.float32)
        col = {name: j for j, name in enumerate(self.spec.cont_names)}
        for name in self.param_names:
            cont[:, col[name]] = numeric[name]
        for name, value in self.fidelity.items():
            cont[:, col[name]] = value
        cat = np.empty((n, len(self.spec.cat_names)), dtype=np.int32)
        cat[:, 0] = codes.numpy()
        cat[:, 1:] = cats
        out = [
            self.session.run(None, {self._input_names[0]: cat[s:s + _CHUNK],
                                    self._input_names[1]: cont[s:s + _CHUNK]})[0]
            for s in range(0, n, _CHUNK)
        ]
        if not out:
            return torch.empty(0, len(self.output_names), dtype=torch.float64)
        return torch.from_numpy(np.concatenate(out).astype(np.float64))

    def evaluate(self, instance: str | int, X: Tensor) -> Tensor:
        """All surrogate outputs on `instance` at exposed `X` (`n x d`): `n x n_outputs`."""
        code = self.instance_code(instance)
        X = self._check_X(X)
        return self._run(torch.full((X.shape[0],), code, dtype=torch.int64), X)

    def objective_from_outputs(self, out: Tensor) -> Tensor:
        """`... x n_outputs` surrogate outputs -> `...` minimised objective."""
        y = out[..., self.output_names.index(self.spec.objective)]
        return 1.0 - y if self.spec.negate_from_one else y

    def objective(self, instance: str | int, X: Tensor) -> Tensor:
        """The minimised objective on `instance` at exposed `X` (`n x d`): `n`, float64."""
        return self.objective_from_outputs(self.evaluate(instance, X))

    def objective_many(self, instances: list[str], X: Tensor) -> Tensor:
        """Objective of row i of `X` (`n x d`) on `instances[i]`, in one batched call: `n`."""
        codes = torch.tensor([self.instance_code(i) for i in instances], dtype=torch.int64)
        X = self._check_X(X)
        if len(codes) != X.shape[0]:
            raise InputDataError(f"{len(codes)} instances for {X.shape[0]} rows of X")
        return self.objective_from_outputs(self._run(codes, X))

    def random_points(self, n: int, generator: torch.Generator) -> Tensor:
        """`n x d` uniform points in the exposed box, integers rounded (as evaluated)."""
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64)
        return self.canonicalize(box_from_unit(u, self.bounds))

    def __repr__(self) -> str:
        return f"YahpoSurrogate({self.scenario!r}, data_dir={str(self.data_dir)!r})"


class YahpoFamily(TableFamily):
    """A YAHPO scenario as a task family: a table of random runs, plus evaluable test tasks.

    The table holds `n_random` uniform random configurations (seeded, in the exposed space) per
    instance, evaluated by the surrogate, like a user's historical runs. Instances in
    `TEST_INSTANCES[scenario]` form the test split (never sampled for training);
    `held_out_tasks` evaluates them through the surrogate.

    Args:
        scenario: "lcbench" or "rbv2_rpart"; also the family's name.
        data_dir: the yahpo_data folder (see `resolve_data_dir`).
        n_random: random configurations per instance in the table.
        seed: seed of the table's configurations.
        n_dense: random configurations per test instance: its `y_max`, and the starts of the
            search for its `y_min` (see `y_range`).
        n_starts: how many of the best `n_dense` configurations the search for `y_min` starts
            from (0: no search, `y_min` is the best random value, as before the search).
    """

    def __init__(self, scenario: str, data_dir: str | os.PathLike | None = None,
                 n_random: int = 200, seed: int = 0, n_dense: int = 20_000,
                 n_starts: int = Y_STARTS):
        if int(n_random) < 2:
            raise TaskFamilyError(f"n_random must be >= 2 points per instance (got {n_random})")
        if int(n_dense) < 1:
            raise TaskFamilyError(f"n_dense must be >= 1 (got {n_dense})")
        if int(n_starts) < 0:
            raise TaskFamilyError(f"n_starts must be >= 0 (got {n_starts})")
        self.surrogate = sur = YahpoSurrogate(scenario, data_dir)
        self.n_random, self.seed, self.n_dense = int(n_random), int(seed), int(n_dense)
        self.n_starts = int(n_starts)
        # One random stream per instance: adding instances never changes another's rows.
        X = torch.cat([
            sur.random_points(self.n_random, make_generator(seed, "yahpo-table", scenario, inst))
            for inst in sur.instances
        ])
        names = [inst for inst in sur.instances for _ in range(self.n_random)]
        y = sur.objective_many(names, X)
        df = pd.DataFrame(X.numpy(), columns=list(sur.param_names))
        df.insert(0, "instance", names)
        df["objective"] = y.numpy()
        table = TableFamily.from_dataframe(
            df, task="instance", inputs=list(sur.param_names), output="objective",
            bounds=sur.bounds, test_tasks=list(TEST_INSTANCES[scenario]), name=scenario,
            shuffle_seed=seed,
        )
        super().__init__(table.X, table.Y, table.task_names, table.counts, table.bounds,
                         TEST_INSTANCES[scenario], name=scenario, input_names=sur.param_names)

    def test_instances(self) -> list[str]:
        """The held-out instances, numerically sorted."""
        return sorted(self.tasks("test"), key=int)

    def y_range(self, instance: str) -> tuple[float, float]:
        """(y*, max) of the objective on held-out `instance` over the box; cached per process.

        Both come from `n_dense` random configurations (a fixed stream): the max is theirs, and
        y* (the task's `y_min`) is the lower of their best and a coordinate search from the
        `n_starts` best of them (`search_minimum`), so that regret keeps measuring after BO
        passes the best random point. y* is at most every one of the random values.
        """
        key = (str(self.surrogate.data_dir.resolve()), self.name, str(instance), self.n_dense,
               self.n_starts, Y_REFINE)
        if key not in _Y_RANGES:
            _Y_RANGES[key] = self._search_y_range(str(instance))
        return _Y_RANGES[key]

    def _search_y_range(self, instance: str) -> tuple[float, float]:
        sur = self.surrogate
        g = make_generator(0, "yahpo-dense", self.name, instance)
        X = sur.random_points(self.n_dense, g)
        y = sur.objective(instance, X)
        # The search moves in the unit cube of the box, `SearchSpace.from_bounds`'s encoding.
        y_min = search_minimum(lambda U: sur.objective(instance, box_from_unit(U, sur.bounds)),
                               SearchSpace.from_bounds(sur.bounds), box_to_unit(X, sur.bounds), y,
                               n_starts=self.n_starts, refine=Y_REFINE)
        return y_min, float(y.max())

    def held_out_tasks(self, n_tasks: int, seed: int = 0) -> list[Task]:
        """The first `n_tasks` test instances (numerically sorted) as evaluable tasks.

        `seed` is accepted for the `TaskFamily` interface; the tasks are the same for every
        seed (a fixed split), and so are `y_min`/`y_max` (`y_range`: fixed random streams). A BO
        run can still, rarely, go below `y_min`, which is a strong search's best, not the true
        minimum.
        """
        if int(n_tasks) < 1:
            raise TaskFamilyError(f"n_tasks must be >= 1 (got {n_tasks})")
        tasks = []
        for inst in self.test_instances()[: int(n_tasks)]:
            lo, hi = self.y_range(inst)
            tasks.append(Task(name=f"{self.name}/{inst}", fn=self._task_fn(inst),
                              bounds=self.bounds.clone(), y_min=lo, y_max=hi))
        return tasks

    def _task_fn(self, instance: str):
        sur = self.surrogate

        def fn(X: Tensor) -> Tensor:
            """`n x d` exposed points -> `n` objective values (float64)."""
            return sur.objective(instance, X)

        return fn

    def __repr__(self) -> str:
        return (f"YahpoFamily({self.name!r}, dim={self.dim}, instances={len(self.task_names)}, "
                f"test={len(self.split_index['test'])}, n_random={self.n_random})")
