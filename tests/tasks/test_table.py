"""TableFamily: historical runs of unequal size as a task family."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from metaprior.config import ReptileConfig
from metaprior.errors import InputDataError, OutOfBoundsWarning, TaskFamilyError
from metaprior.meta.reptile import meta_train
from metaprior.tasks import TableFamily
from metaprior.tasks.family import make_generator
from metaprior.tasks.table import default_test_tasks

SIZES = {"a": 3, "b": 10, "c": 25, "d": 5, "e": 7, "f": 4}


def runs_frame() -> pd.DataFrame:
    """Tasks of unequal size; y is a unique row id so a sampled point names its row."""
    rng = np.random.default_rng(0)
    rows = []
    for name, n in SIZES.items():
        for _ in range(n):
            rows.append({"task": name, "x1": rng.uniform(-2, 3), "x2": rng.uniform(10, 20)})
    df = pd.DataFrame(rows)
    df["y"] = np.arange(len(df), dtype=float)
    return df.sample(frac=1.0, random_state=1)  # rows in no particular order


def make_family(**kwargs) -> TableFamily:
    kwargs.setdefault("test_tasks", ["e", "f"])
    return TableFamily.from_dataframe(runs_frame(), task="task", inputs=["x1", "x2"], output="y",
                                      **kwargs)


def test_structure_and_inferred_bounds():
    df = runs_frame()
    fam = make_family()
    assert fam.dim == 2
    expected = torch.tensor([[df.x1.min(), df.x2.min()], [df.x1.max(), df.x2.max()]],
                            dtype=torch.float64)
    torch.testing.assert_close(fam.bounds, expected)
    assert sorted(fam.tasks("train")) == ["a", "b", "c", "d"]
    assert sorted(fam.tasks("test")) == ["e", "f"]
    assert fam.n_train_tasks() == 4
    for name, n in SIZES.items():
        X, Y = fam.task_rows(name)
        assert X.shape == (n, 2)
        assert sorted(Y.tolist()) == sorted(df.y[df.task == name].tolist())


@pytest.mark.parametrize("n_points", [4, 8, 30])
def test_sample_padding_mask_and_distinct_rows(n_points):
    df = runs_frame().set_index("y")
    fam = make_family()
    for seed in range(10):
        batch = fam.sample(4, n_points, make_generator(seed, "t"))
        assert batch.X.shape == (4, n_points, 2) and batch.Y.shape == (4, n_points)
        assert sorted(batch.task_ids) == ["a", "b", "c", "d"]  # without replacement
        for i, name in enumerate(batch.task_ids):
            real = min(SIZES[name], n_points)
            # Real points first, padding after.
            assert batch.mask[i, :real].all() and not batch.mask[i, real:].any()
            ys = batch.Y[i, :real].tolist()
            assert len(set(ys)) == real, "a row was drawn twice within one task"
            for y, x in zip(ys, batch.X[i, :real].tolist(), strict=True):
                row = df.loc[y]
                assert row.task == name
                assert x == [row.x1, row.x2]
            assert (batch.Y[i, real:] == 0).all()


def test_full_tasks_return_every_row():
    fam = make_family()
    batch = fam.sample(4, 30, make_generator(0))
    for i, name in enumerate(batch.task_ids):
        got = sorted(batch.Y[i][batch.mask[i]].tolist())
        assert got == sorted(fam.task_rows(name)[1].tolist())


def test_splits_are_disjoint():
    fam = make_family()
    train = set(fam.tasks("train"))
    for seed in range(20):
        g = make_generator(seed)
        assert set(fam.sample(3, 5, g, split="train").task_ids) <= train
        assert set(fam.sample(2, 5, g, split="test").task_ids) <= {"e", "f"}
    # More tasks than the split holds: drawn with replacement, still only from the split.
    assert set(fam.sample(9, 5, make_generator(0), split="test").task_ids) <= {"e", "f"}


def test_default_split_is_disjoint_and_stable():
    names = [f"task-{i}" for i in range(40)]
    test = default_test_tasks(names)
    assert 0 < len(test) < len(names)
    # Adding tasks never moves an old one across the split.
    more = default_test_tasks(names + [f"new-{i}" for i in range(10)])
    assert set(test) == set(more) & set(names)
    fam = make_family(test_tasks=None)
    assert set(fam.tasks("train")).isdisjoint(fam.tasks("test"))
    assert fam.tasks("test") and fam.tasks("train")


def test_explicit_bounds_and_bad_bounds():
    fam = make_family(bounds=[[-5.0, 0.0], [5.0, 30.0]])
    torch.testing.assert_close(fam.bounds, torch.tensor([[-5.0, 0.0], [5.0, 30.0]],
                                                        dtype=torch.float64))
    with pytest.raises(TaskFamilyError, match=r"lower=\[5\.0\] >= upper=\[5\.0\]"):
        make_family(bounds=[[-5.0, 5.0], [5.0, 5.0]])
    with pytest.raises(TaskFamilyError, match="1 columns for 2 inputs"):
        make_family(bounds=[[-5.0], [5.0]])


def test_held_out_tasks_unavailable_for_tables():
    with pytest.raises(TaskFamilyError, match="split='test'"):
        make_family().held_out_tasks(2)


def test_empty_dataframe():
    df = pd.DataFrame({"task": [], "x1": [], "x2": [], "y": []})
    with pytest.raises(TaskFamilyError, match="empty"):
        TableFamily.from_dataframe(df, task="task", inputs=["x1", "x2"], output="y")


def test_one_point_task():
    df = runs_frame()
    df = pd.concat([df, pd.DataFrame([{"task": "lonely", "x1": 0.0, "x2": 15.0, "y": -1.0}])])
    with pytest.raises(TaskFamilyError, match="'lonely'"):
        TableFamily.from_dataframe(df, task="task", inputs=["x1", "x2"], output="y")


def test_nan_output_names_the_row():
    df = runs_frame().reset_index(drop=True)
    df.index = [f"run-{i}" for i in range(len(df))]
    df.loc["run-17", "y"] = np.nan
    with pytest.raises(InputDataError, match="'run-17'") as info:
        TableFamily.from_dataframe(df, task="task", inputs=["x1", "x2"], output="y")
    assert "nan" in str(info.value).lower()


def test_missing_column():
    with pytest.raises(TaskFamilyError, match="'loss'"):
        TableFamily.from_dataframe(runs_frame(), task="task", inputs=["x1", "x2"], output="loss")


def test_unknown_test_task_and_all_held_out():
    with pytest.raises(TaskFamilyError, match="'zzz'"):
        make_family(test_tasks=["zzz"])
    with pytest.raises(TaskFamilyError, match="none left"):
        make_family(test_tasks=list(SIZES))


def test_meta_train_needs_enough_train_tasks():
    fam = make_family()  # 4 training tasks
    cfg = dataclasses.replace(ReptileConfig(), tasks_per_step=5, outer_steps=2)
    with pytest.raises(TaskFamilyError, match="4 training tasks.*tasks_per_step=5"):
        meta_train(fam, cfg, progress=False, shift_prior=False)


def test_meta_train_on_a_table_runs():
    fam = make_family()
    cfg = dataclasses.replace(ReptileConfig(), tasks_per_step=4, points_per_task=8,
                              outer_steps=3, inner_steps=2, hidden=(8,))
    prior = meta_train(fam, cfg, progress=False, shift_prior=False)
    assert prior.dim == 2 and prior.family == "table"
    assert all(torch.isfinite(p).all() for p in prior.params)


def test_a_non_number_names_its_column_row_and_value():
    df = runs_frame()
    df["x2"] = df["x2"].astype(object)
    df.loc[df.index[5], "x2"] = "0.1x"
    with pytest.raises(InputDataError, match=rf"column 'x2'.*index {df.index[5]}: '0\.1x'"):
        TableFamily.from_dataframe(df, task="task", inputs=["x1", "x2"], output="y")


def test_a_missing_task_name_names_its_row():
    df = runs_frame()
    df["task"] = df["task"].astype(object)
    df.loc[df.index[3], "task"] = None
    with pytest.raises(InputDataError, match=f"no task name in column 'task', first at index "
                                             f"{df.index[3]}"):
        TableFamily.from_dataframe(df, task="task", inputs=["x1", "x2"], output="y")


def test_bounds_narrower_than_the_data_warn_per_column():
    with pytest.warns(OutOfBoundsWarning, match=r"rows of column 'x1' lie outside its bounds "
                                                r"\[-1\.0, 3\.0\]") as record:
        fam = make_family(bounds=[[-1.0, 10.0], [3.0, 20.0]])
    assert not any("'x2'" in str(w.message) for w in record)  # x2's data lie inside [10, 20]
    assert fam.dim == 2


@pytest.mark.parametrize("inputs, match", [
    (["x1", "y"], "output column 'y' is also listed as an input"),
    (["x1", "x1"], r"\['x1'\] are listed more than once"),
    (["x1", "task"], "task column 'task'"),
    ("x1", "must be a list of column names"),
    ([], "at least one input"),
])
def test_misplaced_columns(inputs, match):
    with pytest.raises(TaskFamilyError, match=match):
        TableFamily.from_dataframe(runs_frame(), task="task", inputs=inputs, output="y")
