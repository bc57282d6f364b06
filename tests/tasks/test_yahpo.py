"""YAHPO Gym surrogate families: input encoding, fixed fidelities, the split, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from metaprior.errors import (  # noqa: E402
    InputDataError,
    OutOfBoundsWarning,
    TaskFamilyError,
)
from metaprior.tasks.family import make_generator  # noqa: E402
from metaprior.tasks.yahpo import (  # noqa: E402
    TEST_INSTANCES,
    YahpoFamily,
    YahpoSurrogate,
    resolve_data_dir,
)

torch.set_num_threads(1)
SCENARIOS = ["lcbench", "rbv2_rpart"]
# Small tables, dense samples and searches for y* keep the module fast; the logic is the same
# at full size.
N_RANDOM, N_DENSE, N_STARTS = 12, 300, 1


def _data_dir():
    try:
        root = resolve_data_dir()
    except TaskFamilyError:
        return None
    return root if all((root / s / "model.onnx").is_file() for s in SCENARIOS) else None


DATA = _data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="YAHPO data folder not found")


@pytest.fixture(scope="module", params=SCENARIOS)
def family(request):
    if DATA is None:
        pytest.skip("YAHPO data folder not found")
    return YahpoFamily(request.param, DATA, n_random=N_RANDOM, seed=0, n_dense=N_DENSE,
                       n_starts=N_STARTS)


def _config_space(scenario):
    return {h["name"]: h for h in
            json.loads((DATA / scenario / "config_space.json").read_text())["hyperparameters"]}


def test_bad_scenario_raises_task_family_error():
    with pytest.raises(TaskFamilyError, match="nasbench"):
        YahpoSurrogate("nasbench", DATA)
    with pytest.raises(TaskFamilyError, match="nasbench"):
        YahpoFamily("nasbench", DATA)


def test_bad_data_dir_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(TaskFamilyError, match="no_such_folder"):
        YahpoSurrogate("lcbench", missing)
    # A folder that exists but is not yahpo_data: the message names it and the missing file.
    with pytest.raises(TaskFamilyError, match="model.onnx") as e:
        YahpoSurrogate("lcbench", tmp_path)
    assert str(tmp_path) in str(e.value)
    # The environment variable is honoured when no folder is passed.
    monkeypatch.setenv("METAPRIOR_YAHPO_DATA", str(missing))
    with pytest.raises(TaskFamilyError, match="no_such_folder"):
        YahpoFamily("rbv2_rpart")


def test_shapes_and_bounds(family):
    sur = family.surrogate
    cs = _config_space(family.name)
    expected = {
        "lcbench": ["batch_size", "learning_rate", "momentum", "weight_decay", "num_layers",
                    "max_units", "max_dropout"],
        "rbv2_rpart": ["cp", "maxdepth", "minbucket", "minsplit"],
    }[family.name]
    assert list(sur.param_names) == expected and family.input_names == expected
    assert family.bounds.shape == (2, len(expected)) and family.bounds.dtype == torch.float64
    for j, name in enumerate(expected):
        lo, hi, log = cs[name]["lower"], cs[name]["upper"], cs[name]["log"]
        want = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
        assert family.bounds[:, j].tolist() == pytest.approx(want, abs=1e-9), name
        assert bool(sur.log_scale[j]) == log
    X = sur.random_points(7, make_generator(0, "shape"))
    assert ((X >= family.bounds[0]) & (X <= family.bounds[1])).all()
    out = sur.evaluate(sur.instances[0], X)
    assert out.shape == (7, len(sur.output_names)) and out.dtype == torch.float64
    assert family.X.shape == (N_RANDOM * len(sur.instances), len(expected))
    assert family.Y.shape == (N_RANDOM * len(sur.instances),)


def test_log_and_integer_parameters_are_decoded(family):
    sur = family.surrogate
    X = sur.random_points(50, make_generator(1, "raw"))
    raw = sur.to_raw(X)
    ints = raw[:, sur.integer]
    assert torch.equal(ints, ints.round())
    logs = sur.log_scale & ~sur.integer
    assert torch.allclose(raw[:, logs], 10.0 ** X[:, logs])
    # Moving an integer parameter by less than half a unit does not change the prediction.
    j = int(torch.nonzero(sur.integer & ~sur.log_scale)[0])
    x = sur.canonicalize(X[:1])
    nudged = x.clone()
    nudged[0, j] += 0.3 if x[0, j] < family.bounds[1, j] else -0.3
    inst = sur.instances[0]
    assert torch.equal(sur.evaluate(inst, x), sur.evaluate(inst, nudged))


def test_fidelity_fixed_at_maximum_and_columns_match_onnx(family):
    """Rebuild the ONNX inputs by hand, in yahpo_gym 1.0.2's column order, and compare."""
    sur = family.surrogate
    expected_fid = {"lcbench": {"epoch": 52.0},
                    "rbv2_rpart": {"trainsize": 1.0, "repl": 10.0}}[family.name]
    assert sur.fidelity == expected_fid
    inst = sur.instances[3]
    X = sur.random_points(20, make_generator(2, "onnx"))
    raw = dict(zip(sur.param_names, sur.to_raw(X).T.numpy(), strict=True))
    raw.update({k: np.full(20, v) for k, v in expected_fid.items()})
    enc = json.loads((DATA / family.name / "encoding.json").read_text())
    if family.name == "lcbench":
        cont_cols = ["epoch", "batch_size", "learning_rate", "momentum", "weight_decay",
                     "num_layers", "max_units", "max_dropout"]
        cat = [[enc["OpenML_task_id"][inst]]] * 20
    else:
        cont_cols = ["cp", "maxdepth", "minbucket", "minsplit", "trainsize", "repl"]
        cat = [[enc["task_id"][inst], enc["num.impute.selected.cpo"]["impute.mean"]]] * 20
    cont = np.stack([raw[c] for c in cont_cols], 1).astype(np.float32)
    sess = ort.InferenceSession(str(DATA / family.name / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    by_hand = sess.run(None, {names[0]: np.array(cat, np.int32), names[1]: cont})[0]
    ours = sur.evaluate(inst, X).numpy()
    np.testing.assert_allclose(ours, by_hand, rtol=1e-5, atol=1e-6)
    # The comparison can fail: a lower fidelity gives different predictions.
    fid_col = cont_cols.index(next(iter(expected_fid)))
    low = cont.copy()
    low[:, fid_col] = {"lcbench": 1.0, "rbv2_rpart": 0.1}[family.name]
    other = sess.run(None, {names[0]: np.array(cat, np.int32), names[1]: low})[0]
    assert not np.allclose(other, by_hand, rtol=1e-3)


def test_held_out_instances_disjoint_from_training(family):
    """Honesty: no test instance's rows can reach meta-training."""
    instances = set(family.surrogate.instances)
    test, train = set(family.tasks("test")), set(family.tasks("train"))
    assert test == set(TEST_INSTANCES[family.name])
    assert not test & train and test | train == instances
    # The documented rule: every 4th instance id in numerical order, from the first.
    ordered = sorted(instances, key=int)
    assert sorted(test, key=int) == ordered[::4]
    g = make_generator(0, "honesty")
    for _ in range(5):
        batch = family.sample(len(train), 4, g, split="train")
        assert set(batch.task_ids) <= train
    held = family.held_out_tasks(len(test) + 5)
    assert [t.name.split("/")[1] for t in held] == sorted(test, key=int)


def test_objective_plausible_and_consistent_with_table(family):
    sur = family.surrogate
    assert torch.isfinite(family.Y).all()
    if family.name == "lcbench":
        assert (family.Y > 0).all()  # a cross-entropy
    else:
        assert ((family.Y >= 0) & (family.Y <= 1)).all()  # 1 - accuracy
    # The table's rows are the surrogate's objective at the stored (rounded) configurations.
    inst = family.tasks("test")[0]
    X, Y = family.task_rows(inst)
    assert torch.allclose(sur.objective(inst, X), Y)
    assert torch.equal(sur.canonicalize(X), X)
    # The two objectives are the documented outputs.
    out = sur.evaluate(inst, X)
    col = {"lcbench": "val_cross_entropy", "rbv2_rpart": "acc"}[family.name]
    raw = out[:, sur.output_names.index(col)]
    assert torch.allclose(Y, raw if family.name == "lcbench" else 1 - raw)


def test_held_out_tasks_are_evaluable(family):
    tasks = family.held_out_tasks(2, seed=5)
    first = sorted(TEST_INSTANCES[family.name], key=int)[:2]
    assert [t.name for t in tasks] == [f"{family.name}/{i}" for i in first]
    X = family.surrogate.random_points(64, make_generator(3, "task"))
    for t in tasks:
        y = t(X)
        assert y.shape == (64,) and y.dtype == torch.float64 and torch.isfinite(y).all()
        assert t.y_min < t.y_max and torch.equal(t.bounds, family.bounds)
        # y_max is the max of the dense sample; y_min, a search's best, is below all of it.
        inst = t.name.split("/")[1]
        dense = family.surrogate.random_points(
            N_DENSE, make_generator(0, "yahpo-dense", family.name, inst))
        y_dense = t(dense)
        assert t.y_max == float(y_dense.max())
        assert t.y_min <= float(y_dense.min()) and t.y_min <= float(y.min())
    # The same tasks for any seed: a fixed split.
    again = family.held_out_tasks(2, seed=0)
    assert [(t.name, t.y_min, t.y_max) for t in again] == [
        (t.name, t.y_min, t.y_max) for t in tasks]
    with pytest.raises(TaskFamilyError, match="-1"):
        family.held_out_tasks(-1)


@needs_data
def test_deterministic_build():
    a = YahpoFamily("lcbench", DATA, n_random=N_RANDOM, seed=3)
    b = YahpoFamily("lcbench", DATA, n_random=N_RANDOM, seed=3)
    c = YahpoFamily("lcbench", DATA, n_random=N_RANDOM, seed=4)
    assert torch.equal(a.X, b.X) and torch.equal(a.Y, b.Y) and a.task_names == b.task_names
    assert not torch.equal(a.X, c.X)
    # Sampling is reproducible from the generator's seed.
    s1 = a.sample(4, 5, make_generator(9, "s"))
    s2 = b.sample(4, 5, make_generator(9, "s"))
    assert torch.equal(s1.X, s2.X) and s1.task_ids == s2.task_ids


def test_bad_inputs(family):
    with pytest.raises(TaskFamilyError, match="-1"):
        YahpoFamily(family.name, DATA, n_random=2, n_starts=-1)
    sur = family.surrogate
    with pytest.raises(TaskFamilyError, match="'999999'"):
        sur.evaluate("999999", torch.zeros(1, sur.dim))
    with pytest.raises(InputDataError, match=r"\(3, 2\)"):
        sur.evaluate(sur.instances[0], torch.zeros(3, 2))
    x = family.bounds.mean(0, keepdim=True)
    with pytest.raises(InputDataError, match="nan"):
        sur.evaluate(sur.instances[0], torch.full_like(x, float("nan")))
    # Points outside the box are clamped, with a warning.
    outside = x.clone()
    outside[0, 0] = family.bounds[1, 0] + 1.0
    clamped = outside.clone()
    clamped[0, 0] = family.bounds[1, 0]
    with pytest.warns(OutOfBoundsWarning, match="clamped"):
        y_out = sur.evaluate(sur.instances[0], outside)
    assert torch.equal(y_out, sur.evaluate(sur.instances[0], clamped))


@needs_data
@pytest.mark.quality
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_y_min_beats_the_best_random_configuration(scenario):
    """At the default settings, y* lies strictly below the best of the 20,000 random
    configurations (the y_min before the search, `n_starts=0`), which BO soon passes."""
    fam = YahpoFamily(scenario, DATA, n_random=2)
    inst = fam.test_instances()[0]
    task = fam.held_out_tasks(1)[0]
    best_random, y_max = YahpoFamily(scenario, DATA, n_random=2, n_starts=0).y_range(inst)
    assert task.y_min < best_random and task.y_max == y_max, (inst, task.y_min, best_random)
    # Cached per process: a new family object with the same settings reuses the search.
    assert YahpoFamily(scenario, DATA, n_random=2).y_range(inst) == (task.y_min, task.y_max)
