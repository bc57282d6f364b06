"""Historical runs as a task family: one row per evaluation, many tasks of unequal size.

Rows are stored once, grouped by task, in two flat tensors. A meta-batch gathers its points by
index (no per-step copy of the table), so a table of millions of rows streams in constant memory.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metaprior.errors import ConfigError, InputDataError, OutOfBoundsWarning, TaskFamilyError
from metaprior.space import Float, SearchSpace
from metaprior.tasks.family import (
    Task,
    TaskBatch,
    TaskFamily,
    make_generator,
    stream_seed,
    validate_bounds,
)

# Default split rule: a task is held out when the hash of its name falls in the first fifth.
TEST_FRACTION_BUCKETS = 5


def row_label(df: pd.DataFrame, i: int):
    """The index label of row `i`, as a plain Python value (`7`, not `np.int64(7)`)."""
    label = df.index[i]
    return label.item() if isinstance(label, np.generic) else label


def check_columns(df: pd.DataFrame, task: str, inputs: Sequence[str], output: str) -> list[str]:
    """The input column names as a list; `TaskFamilyError` for a missing, repeated or
    misplaced column (the output or the task column listed as an input)."""
    if isinstance(inputs, str) or not isinstance(inputs, Sequence):
        raise TaskFamilyError(f"inputs must be a list of column names (got {inputs!r})")
    inputs = list(inputs)
    if not inputs:
        raise TaskFamilyError("inputs is empty: a family needs at least one input column")
    missing = [c for c in [task, *inputs, output] if c not in df.columns]
    if missing:
        raise TaskFamilyError(f"columns {missing} not in the DataFrame (has {list(df.columns)})")
    repeated = sorted({c for c in inputs if inputs.count(c) > 1}, key=str)
    if repeated:
        raise TaskFamilyError(f"input columns {repeated} are listed more than once in {inputs}")
    if output in inputs:
        raise TaskFamilyError(f"the output column {output!r} is also listed as an input "
                              f"({inputs}); the network would be given the value it predicts")
    if task in inputs or task == output:
        raise TaskFamilyError(f"the task column {task!r} is also listed as an input or the output "
                              f"(inputs {inputs}, output {output!r})")
    return inputs


def check_space_columns(df: pd.DataFrame, task: str, space: SearchSpace, output: str) -> None:
    """`TaskFamilyError` for a space that is not a `SearchSpace`, a column that is missing, or a
    parameter that is also the task or the output column."""
    if not isinstance(space, SearchSpace):
        raise TaskFamilyError(f"space must be a SearchSpace (got {type(space).__name__})")
    missing = [c for c in [task, *space.names, output] if c not in df.columns]
    if missing:
        raise TaskFamilyError(f"columns {missing} not in the DataFrame (has {list(df.columns)})")
    clash = [c for c in (task, output) if c in space.names]
    if clash or task == output:
        raise TaskFamilyError(f"the task column {task!r} and the output column {output!r} must differ "
                              f"from each other and from the space's parameters {space.names}")


def names_space(inputs: list, bounds: Tensor) -> SearchSpace:
    """The linear floats of a box, named after the input columns (`str` of a non-string name)."""
    names = [c if isinstance(c, str) and c else str(c) for c in inputs]
    try:
        return SearchSpace([Float(n, lo, hi) for n, (lo, hi) in zip(names, bounds.T.tolist(),
                                                                      strict=True)])
    except ConfigError as e:  # e.g. the columns 1 and "1", which are one name as strings
        raise TaskFamilyError(f"input columns {inputs} cannot name a search space: {e}") from None


def numeric_values(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The columns as an `N x len(columns)` float64 array; `InputDataError` naming the column,
    the row and the value of the first entry that is not a number."""
    out = np.empty((len(df), len(columns)), dtype=np.float64)
    for j, c in enumerate(columns):
        col = df[c]
        try:
            out[:, j] = col.to_numpy(dtype=np.float64)
            continue
        except (TypeError, ValueError):
            pass
        coerced = pd.to_numeric(col, errors="coerce")
        bad = (coerced.isna() & col.notna()).to_numpy()
        if not bad.any():  # e.g. None in an object column: a missing value, reported as NaN
            out[:, j] = coerced.to_numpy(dtype=np.float64)
            continue
        i = int(bad.argmax())
        raise InputDataError(f"column {c!r} holds {int(bad.sum())} values that are not numbers, "
                             f"first at index {row_label(df, i)!r}: {col.iloc[i]!r}")
    return out


def warn_rows_outside(X: np.ndarray, bounds: Tensor, inputs: list[str]) -> None:
    """Warn (`OutOfBoundsWarning`) about each input column whose rows leave the given bounds:
    they map outside the unit cube the network is trained on."""
    lo, hi = bounds.numpy()
    for j, c in enumerate(inputs):
        below, above = X[:, j] < lo[j], X[:, j] > hi[j]
        if below.any() or above.any():
            warnings.warn(
                f"{int(below.sum() + above.sum())} rows of column {c!r} lie outside its bounds "
                f"[{lo[j]}, {hi[j]}] (data range [{X[:, j].min()}, {X[:, j].max()}]); they are "
                f"used as given, outside the unit cube", OutOfBoundsWarning, stacklevel=3)


def default_test_tasks(names: Sequence[str]) -> list[str]:
    """The documented default split: tasks whose `stream_seed(0, 'split', name) % 5 == 0`.

    It depends only on each task's own name, so adding tasks never moves an old task across the
    split. At least one task is held out and at least one kept for training.
    """
    names = sorted(map(str, names))
    test = [n for n in names if stream_seed(0, "split", n) % TEST_FRACTION_BUCKETS == 0]
    if not test and len(names) > 1:
        test = [min(names, key=lambda n: stream_seed(0, "split", n))]
    if len(test) == len(names):
        test = test[:-1]
    return test


class TableFamily(TaskFamily):
    """A family built from a table of past evaluations.

    Args:
        X: `N x d` inputs, rows grouped by task (see `from_dataframe`).
        Y: `N` outputs (minimised).
        task_names: the tasks' names, in the order of their row blocks.
        counts: rows per task.
        bounds: `2 x d` box.
        test_tasks: names held out from meta-training.
        name: the family's name.
        input_names: the input columns' names (the default space's parameter names).
        space: the `SearchSpace` the inputs were mapped from (`X` then holds `space.to_model`
            values and `bounds` is `space.model_bounds`); None: linear floats over `bounds`
            named after `input_names` (or x0, x1, ...).
    """

    def __init__(self, X: Tensor, Y: Tensor, task_names: list[str], counts: Tensor, bounds,
                 test_tasks: Sequence[str], name: str = "table", input_names=None,
                 space: SearchSpace | None = None):
        super().__init__(bounds, name)
        if space is None:
            space = (SearchSpace.from_bounds(self.bounds) if input_names is None
                     else names_space(list(input_names), self.bounds))
        elif not torch.equal(space.model_bounds, self.bounds):
            raise TaskFamilyError(f"bounds {self.bounds.tolist()} are not the space's model box "
                                  f"{space.model_bounds.tolist()}")
        self._space = space
        self.X, self.Y = X, Y
        self.task_names = list(task_names)
        self.counts = counts
        self.offsets = torch.cumsum(counts, 0) - counts
        self.input_names = list(input_names) if input_names is not None else None
        unknown = sorted(set(map(str, test_tasks)) - set(self.task_names))
        if unknown:
            raise TaskFamilyError(f"test_tasks {unknown} are not tasks of the table")
        test = set(map(str, test_tasks))
        self.split_index = {
            "train": torch.tensor([i for i, n in enumerate(self.task_names) if n not in test]),
            "test": torch.tensor([i for i, n in enumerate(self.task_names) if n in test]),
        }
        if len(self.split_index["train"]) == 0:
            raise TaskFamilyError(f"every task is held out ({sorted(test)}); none left to train on")

    @property
    def space(self) -> SearchSpace:
        """The raw parameters: the space given to `from_dataframe`, else the input columns as
        linear floats over `bounds`."""
        return self._space

    @classmethod
    def from_dataframe(cls, df: pd.DataFrame, task: str, inputs: Sequence[str] | None = None,
                       output: str | None = None, bounds=None,
                       test_tasks: Sequence[str] | None = None, name: str = "table",
                       shuffle_seed: int = 0, space: SearchSpace | None = None) -> TableFamily:
        """Build a family from one row per evaluation.

        Give either `space` (typed, raw values) or `inputs` (numeric columns, a box).

        Args:
            df: the runs.
            task: column naming the task of each row.
            inputs: the d input columns (numbers; without `space`).
            output: the column to minimise.
            bounds: `2 x d`; inferred from the data's min and max when None (without `space`).
            test_tasks: tasks held out of meta-training; `default_test_tasks` when None.
            shuffle_seed: rows are shuffled once within each task, so that strided sampling
                of a task's rows is a random subset whatever order the table came in.
            space: a `SearchSpace` whose parameters name columns of raw values (a learning rate
                as 0.003, an optimizer as "adam"). They are encoded once (`space.to_model`):
                `X` is `N x encoded_dim` in the unit cube, which is `bounds`, or, for a space of
                linear floats only, the raw values in the space's box. Values outside a
                parameter's range, unknown levels and missing values raise `InputDataError`.

        Example:
            >>> fam = TableFamily.from_dataframe(df, task="dataset", output="val_loss", space=space)
            >>> fam.space.names, fam.bounds.shape   # (['lr', 'opt'], torch.Size([2, 3]))
        """
        if output is None:
            raise TaskFamilyError("output is required: the column to minimise")
        if space is not None:
            if inputs is not None or bounds is not None:
                raise TaskFamilyError(f"give space= or inputs=/bounds=, not both (inputs={inputs!r}, "
                                      f"bounds given: {bounds is not None}); the space names the "
                                      "inputs and sets their ranges")
            check_space_columns(df, task, space, output)
            if len(df) == 0:
                raise TaskFamilyError("the DataFrame is empty: no tasks to learn from")
            X = space.to_model(df[space.names]).numpy()
            values = np.concatenate([X, numeric_values(df, [output])], axis=1)
            return cls._from_values(df, task, space.names, output, values, space.model_bounds,
                                    test_tasks, name, shuffle_seed, space)
        if inputs is None:
            raise TaskFamilyError("give inputs= (the input columns) or space= (a SearchSpace)")
        inputs = check_columns(df, task, inputs, output)
        if len(df) == 0:
            raise TaskFamilyError("the DataFrame is empty: no tasks to learn from")
        values = numeric_values(df, inputs + [output])
        return cls._from_values(df, task, inputs, output, values, bounds, test_tasks, name,
                                shuffle_seed, None)

    @classmethod
    def _from_values(cls, df: pd.DataFrame, task: str, inputs: list, output: str, values: np.ndarray,
                     bounds, test_tasks, name: str, shuffle_seed: int,
                     space: SearchSpace | None) -> TableFamily:
        """The family of `values` (`N x (D + 1)`: the model's inputs, then the output)."""
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            i = int(bad.argmax())
            # With a space the inputs were checked when encoded: only the output can be bad.
            j = int((~np.isfinite(values[i])).argmax())
            column = output if space is not None else [*inputs, output][j]
            raise InputDataError(
                f"{int(bad.sum())} rows have NaN or inf in {inputs + [output]}, "
                f"first at index {row_label(df, i)!r} (column {column!r}): {values[i].tolist()}"
            )
        unnamed = df[task].isna().to_numpy()
        if unnamed.any():
            raise InputDataError(f"{int(unnamed.sum())} rows have no task name in column {task!r}, "
                                 f"first at index {row_label(df, int(unnamed.argmax()))!r}")
        # Integer codes (names sorted) make the grouping sort numeric: a million string keys
        # sort several times slower than their codes.
        codes, names = pd.factorize(df[task].astype(str), sort=True)
        names = np.asarray(names, dtype=object)
        rng = np.random.default_rng(shuffle_seed)
        order = np.lexsort((rng.random(len(df)), codes))  # group by task, random within a task
        values = values[order]
        counts = np.bincount(codes, minlength=len(names))
        one = names[counts < 2].tolist()
        if one:
            raise TaskFamilyError(
                f"tasks {one[:10]} have a single row; a task needs >= 2 points to split support "
                "from query"
            )
        X = torch.from_numpy(values[:, :-1].copy())
        Y = torch.from_numpy(values[:, -1].copy())
        if bounds is None:
            bounds = torch.stack([X.min(0).values, X.max(0).values])
        bounds = validate_bounds(bounds)
        if space is None:  # a space has refused out-of-range values already
            if bounds.shape[-1] != len(inputs):
                raise TaskFamilyError(f"bounds have {bounds.shape[-1]} columns for {len(inputs)} inputs")
            warn_rows_outside(values[:, :-1], bounds, inputs)
        names = names.tolist()
        if test_tasks is None:
            test_tasks = default_test_tasks(names)
        return cls(X, Y, names, torch.from_numpy(counts), bounds, test_tasks, name, inputs, space)

    def n_train_tasks(self) -> int:
        return len(self.split_index["train"])

    def validation_folds(self, n_folds: int, seed: int) -> list[tuple[TableFamily, Tensor]]:
        """Cross-validation folds over the training tasks: `(training view, held-out tasks)`.

        The training tasks are shuffled (seeded) and dealt into `min(n_folds, tasks)` folds.
        Each fold's training view shares the table's rows, and its "train" split is the other
        folds' tasks; the held-out tasks are indices into the table (`task_names`, `offsets`).
        Test tasks stay out of every fold.

        Raises:
            TaskFamilyError: fewer than 2 training tasks, or `n_folds < 2`.
        """
        train = self.split_index["train"]
        if len(train) < 2 or n_folds < 2:
            raise TaskFamilyError(f"{self.name}: cross-validation needs >= 2 folds and >= 2 "
                                  f"training tasks (got {n_folds} folds, {len(train)} tasks)")
        order = train[torch.randperm(len(train), generator=make_generator(
            seed, "validation-folds", self.name))]
        folds = []
        for fold in range(min(n_folds, len(train))):
            held = order[fold::n_folds].sort().values
            training = copy.copy(self)
            training.split_index = {"train": train[~torch.isin(train, held)],
                                    "test": self.split_index["test"]}
            folds.append((training, held))
        return folds

    def tasks(self, split: str) -> list[str]:
        self.check_split(split)
        return [self.task_names[i] for i in self.split_index[split].tolist()]

    def sample(self, n_tasks, n_points, generator, split="train", grid=False) -> TaskBatch:
        """B tasks of `split` (without replacement while possible), up to `n_points` rows each.

        A task with fewer rows is padded and masked. Rows are picked by stratified offsets into
        the task's shuffled block: distinct rows, O(B x n_points) memory whatever the table size.
        """
        self.check_split(split)
        pool = self.split_index[split]
        if len(pool) == 0:
            raise TaskFamilyError(f"{self.name} has no {split!r} tasks")
        dev = generator.device
        if n_tasks <= len(pool):
            pick = torch.rand(len(pool), generator=generator, device=dev).argsort()[:n_tasks]
        else:
            pick = torch.randint(len(pool), (n_tasks,), generator=generator, device=dev)
        task_idx = pool.to(dev)[pick]
        counts = self.counts.to(dev)[task_idx].unsqueeze(-1)  # B x 1
        j = torch.arange(n_points, device=dev).unsqueeze(0)  # 1 x n
        u = torch.rand(n_tasks, n_points, generator=generator, device=dev, dtype=torch.float64)
        # Bin j holds rows [floor(j c / n), floor((j + 1) c / n)): integer bins, so distinct.
        lo = j * counts // n_points
        hi = (j + 1) * counts // n_points
        strided = lo + (u * (hi - lo)).floor().long()
        local = torch.where(counts > n_points, strided, j)
        mask = j < counts
        local = torch.where(mask, local, torch.zeros_like(local))
        rows = (self.offsets.to(dev)[task_idx].unsqueeze(-1) + local).cpu()
        X = self.X[rows].to(dev)
        Y = torch.where(mask, self.Y[rows].to(dev), torch.zeros((), dtype=self.Y.dtype, device=dev))
        return TaskBatch(X, Y, mask, [self.task_names[i] for i in task_idx.tolist()])

    def held_out_tasks(self, n_tasks: int, seed: int = 0) -> list[Task]:
        raise TaskFamilyError(
            f"{self.name}: a table cannot evaluate new points, so it has no BO test tasks; use "
            "sample(..., split='test') for few-shot evaluation, or a surrogate family (yahpo)"
        )

    def task_rows(self, name: str) -> tuple[Tensor, Tensor]:
        """All rows of one task: `n x d` inputs and `n` outputs."""
        i = self.task_names.index(str(name))
        s, c = int(self.offsets[i]), int(self.counts[i])
        return self.X[s:s + c], self.Y[s:s + c]

