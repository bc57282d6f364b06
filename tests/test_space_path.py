"""The typed search space through the whole path: prior file, table family, optimiser.

Tiny untrained or barely trained priors only: these tests check the plumbing, not BO quality.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import MIXED, random_prior, runs_table, small_config

from metaprior.config import ReptileConfig
from metaprior.errors import ConfigError, InputDataError, PriorFileError, TaskFamilyError
from metaprior.meta.reptile import meta_train
from metaprior.nets import init_params
from metaprior.optim import Optimizer, minimize
from metaprior.prior import MetaPrior
from metaprior.priorfile import read_prior_file, write_prior_file
from metaprior.space import Categorical, Float, Int, SearchSpace
from metaprior.tasks import Logistic, TableFamily
from metaprior.tasks.family import make_generator
from metaprior.typed_acquisition import one_hot_combinations, project_model_points


def typed_prior(space: SearchSpace = MIXED, seed: int = 0) -> MetaPrior:
    """An untrained prior over `space`: its bounds are the unit cube of the encoded columns."""
    cfg = dataclasses.replace(ReptileConfig(), hidden=(8, 8))
    params = init_params(space.encoded_dim, cfg.hidden, make_generator(seed, "typed-prior"))
    return MetaPrior(params, space.model_bounds, y_mean=0.5, y_std=2.0, config=cfg, family="typed",
                     space=space)


def rewrite_header(src, dst, **changes) -> None:
    """Copy a prior file with header fields changed (None removes one); the checksum is redone."""
    tensors, header = read_prior_file(src)
    for key, value in changes.items():
        if value is None:
            header.pop(key, None)
        else:
            header[key] = value
    write_prior_file(dst, tensors, header)


# ---- Step 1: the prior knows its space ----------------------------------------------------
def test_box_prior_has_the_unnamed_float_space():
    prior = random_prior(2)
    assert prior.space == SearchSpace.from_bounds(prior.bounds)
    assert prior.space.names == ["x0", "x1"]
    assert prior.header()["space"] == prior.space.to_dict()


def test_typed_prior_round_trips_its_space(tmp_path):
    prior = typed_prior()
    assert prior.bounds.tolist() == [[0.0] * 6, [1.0] * 6]
    prior.save(tmp_path / "t.prior")
    back = MetaPrior.load(tmp_path / "t.prior")
    assert back.space == MIXED and back.space.difference(MIXED) is None
    assert [type(c) for c in back.space["opt"].choices] == [str, str, int, bool]  # levels keep types
    assert torch.equal(back.bounds, prior.bounds)


def test_file_without_space_loads_with_the_unnamed_float_space(tmp_path):
    random_prior(3).save(tmp_path / "new.prior")
    rewrite_header(tmp_path / "new.prior", tmp_path / "old.prior", space=None)
    old = MetaPrior.load(tmp_path / "old.prior")
    assert old.space == SearchSpace.from_bounds(old.bounds) and old.space.names == ["x0", "x1", "x2"]


@pytest.mark.parametrize("space, needle", [
    ("not a space", "header field space must be null or an object"),
    ({"version": 1, "parameters": [{"type": "float", "name": "a", "lower": 1, "upper": 0}]},
     "lower must be below upper"),
    ({"version": 9, "parameters": []}, "format version 9"),
    # a valid space that does not fit the prior's 6 encoded columns
    (SearchSpace([Float("a", 0, 1)]).to_dict(), "do not match the space"),
])
def test_bad_space_in_header_is_a_prior_file_error(tmp_path, space, needle):
    typed_prior().save(tmp_path / "t.prior")
    rewrite_header(tmp_path / "t.prior", tmp_path / "bad.prior", space=space)
    with pytest.raises(PriorFileError, match="space") as err:
        MetaPrior.load(tmp_path / "bad.prior")
    assert needle in str(err.value) and "bad.prior" in str(err.value)


def test_edited_space_without_a_new_checksum_is_corrupt(tmp_path):
    # The checksum covers the header, so a hand-edited space is caught as corruption.
    from safetensors.torch import load_file, save_file

    typed_prior().save(tmp_path / "t.prior")
    with open(tmp_path / "t.prior", "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    header = json.loads(meta["header"])
    header["space"]["parameters"][1]["upper"] = 5
    meta["header"] = json.dumps(header, sort_keys=True)
    save_file(load_file(tmp_path / "t.prior"), tmp_path / "edited.prior", metadata=meta)
    with pytest.raises(PriorFileError, match="checksum"):
        MetaPrior.load(tmp_path / "edited.prior")


def test_space_must_match_the_prior_bounds():
    prior = random_prior(2)
    with pytest.raises(ConfigError, match="unit cube of its 6 encoded columns"):
        MetaPrior(prior.params, prior.bounds, 0.0, 1.0, prior.config, space=MIXED)
    with pytest.raises(ConfigError, match=r"do not match the space"):  # a box space: its own box
        MetaPrior(prior.params, prior.bounds, 0.0, 1.0, prior.config,
                  space=SearchSpace([Float("a", 0, 1), Float("b", 0, 2)]))
    with pytest.raises(ConfigError, match="space must be a SearchSpace"):
        MetaPrior(prior.params, prior.bounds, 0.0, 1.0, prior.config, space={"a": 1})


def test_meta_train_stores_the_family_space(tmp_path):
    family = Logistic()
    prior = meta_train(family, small_config(outer_steps=2), seed=0, progress=False, shift_prior=False)
    assert prior.space == family.space == SearchSpace.from_bounds(family.bounds)
    prior.save(tmp_path / "l.prior")
    assert MetaPrior.load(tmp_path / "l.prior").space == prior.space


# ---- Step 2: TableFamily over a space -----------------------------------------------------
def test_table_family_encodes_raw_columns_once():
    df = runs_table()
    fam = TableFamily.from_dataframe(df, task="dataset", space=MIXED, output="loss", test_tasks=["d0"])
    assert fam.space == MIXED and fam.dim == MIXED.encoded_dim == 6
    assert fam.bounds.tolist() == [[0.0] * 6, [1.0] * 6]
    expected = MIXED.encode(df[MIXED.names])
    # rows are regrouped by task: compare as sets of (encoded row, output)
    got = sorted(map(tuple, torch.cat([fam.X, fam.Y[:, None]], 1).tolist()))
    want = sorted(map(tuple, torch.cat([expected, torch.tensor(df["loss"].values)[:, None]], 1).tolist()))
    assert got == want
    assert fam.tasks("test") == ["d0"]


def test_meta_train_on_a_typed_table_keeps_its_space(tmp_path):
    fam = TableFamily.from_dataframe(runs_table(), task="dataset", space=MIXED, output="loss",
                                     test_tasks=[])
    prior = meta_train(fam, small_config(outer_steps=3), seed=0, progress=False, shift_prior=False)
    assert prior.space == MIXED and prior.bounds.shape == (2, 6)
    prior.save(tmp_path / "t.prior")
    assert MetaPrior.load(tmp_path / "t.prior").space == MIXED


def test_table_family_without_space_names_its_inputs():
    df = pd.DataFrame({"task": ["a", "a", "b", "b"], "u": [0.0, 1.0, 2.0, 3.0], "v": [5.0, 6.0, 7.0, 9.0],
                       "y": [1.0, 2.0, 3.0, 4.0]})
    fam = TableFamily.from_dataframe(df, task="task", inputs=["u", "v"], output="y", test_tasks=[])
    assert fam.space == SearchSpace([Float("u", 0.0, 3.0), Float("v", 5.0, 9.0)])
    assert torch.equal(fam.space.bounds, fam.bounds)


def test_table_family_with_a_box_space_keeps_raw_values():
    df = pd.DataFrame({"task": ["a", "a", "b", "b"], "u": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0, 4.0]})
    space = SearchSpace([Float("u", -1.0, 4.0)])
    fam = TableFamily.from_dataframe(df, task="task", space=space, output="y", test_tasks=[])
    assert fam.bounds.tolist() == [[-1.0], [4.0]] and sorted(fam.X[:, 0].tolist()) == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("change, kwargs, error, needle", [
    (None, {"inputs": ["lr"]}, TaskFamilyError, "not both"),
    (lambda d: d.drop(columns="opt"), {}, TaskFamilyError, "['opt'] not in the DataFrame"),
    (lambda d: d.assign(lr=d.lr.where(d.index != 3, 0.5)), {}, InputDataError, "'lr': row 3 holds 0.5"),
    (lambda d: d.assign(opt=d.opt.where(d.index != 2, "rmsprop")), {}, InputDataError, "'rmsprop'"),
    (lambda d: d.assign(layers=d.layers.astype(float).where(d.index != 1, 2.5)), {}, InputDataError,
     "not a whole number"),
    (lambda d: d.assign(loss=d.loss.where(d.index != 4, np.nan)), {}, InputDataError, "column 'loss'"),
    (lambda d: d.rename(columns={"loss": "lr_"}).assign(lr_=1.0), {"output": "lr"}, TaskFamilyError,
     "must differ"),
])
def test_table_family_space_errors_name_the_value(change, kwargs, error, needle):
    df = runs_table() if change is None else change(runs_table())
    args = {"task": "dataset", "space": MIXED, "output": "loss", **kwargs}
    with pytest.raises(error) as err:
        TableFamily.from_dataframe(df, **args)
    assert needle in str(err.value)


# ---- Step 3: Optimizer over a space -------------------------------------------------------
FAST = {"num_restarts": 2, "raw_samples": 32}


def mixed_loss(trials: pd.DataFrame) -> list[float]:
    """A loss over `MIXED`'s raw values: best near lr 3e-3, few layers, optimizer 3."""
    return [(math.log10(r.lr) + 2.5) ** 2 + 0.1 * r.layers + (0.0 if r.opt == 3 else 0.5)
            for r in trials.itertuples()]


def assert_valid(space: SearchSpace, trials: pd.DataFrame) -> None:
    """Raw values of the right types, in range: `encode` refuses anything else."""
    assert list(trials.columns) == space.names
    space.encode(trials)
    for p in space.parameters:
        if isinstance(p, Int):
            assert all(isinstance(v, int) for v in trials[p.name].tolist())


def test_box_space_runs_exactly_as_its_bounds():
    prior = random_prior(2)

    def fn(X):
        return ((X - 0.3) ** 2).sum(-1)

    by_bounds = Optimizer(prior.bounds, prior=prior, seed=1, **FAST)
    by_space = Optimizer(prior.space, prior=prior, seed=1, **FAST)
    for _ in range(3):
        X = by_bounds.ask()
        trials = by_space.ask()
        assert torch.equal(torch.tensor(trials.values), X)
        by_bounds.tell(X, fn(X))
        by_space.tell(trials, fn(torch.tensor(trials.values)))
    assert by_space.best[0] == dict(zip(["x0", "x1"], by_bounds.best[0].tolist(), strict=True))
    assert list(by_space.history.columns[1:3]) == ["x0", "x1"]


def test_typed_study_asks_and_tells_raw_values():
    prior = typed_prior()
    opt = Optimizer(MIXED, prior=prior, seed=0, **FAST)
    for q in (1, 1, 2, 1):
        trials = opt.ask(q)
        assert len(trials) == q
        assert_valid(MIXED, trials)
        assert_valid(MIXED, opt.pending)
        opt.tell(trials.assign(trial=range(q)), mixed_loss(trials))  # the extra column is ignored
    history = opt.history
    assert history["asked"].all() and history["source"].iloc[0] == "prior"
    assert list(history.columns[1:4]) == MIXED.names
    torch.testing.assert_close(opt.train_X, MIXED.to_model(history[MIXED.names]), rtol=0, atol=0)
    x, y = opt.best
    assert set(x) == set(MIXED.names) and y == min(history["y"])
    assert x == history.loc[history["y"].idxmin(), MIXED.names].to_dict()


def test_many_levels_are_optimised_relaxed_then_projected():
    levels = [f"l{i}" for i in range(9)]
    space = SearchSpace([Categorical("a", levels), Categorical("b", levels),
                         Int("units", 16, 1024, log=True)])
    assert one_hot_combinations(space) is None  # 81 > MAX_ENUMERATED_LEVELS
    opt = Optimizer(space, seed=0, n_init=2, **FAST)
    for _ in range(3):
        trials = opt.ask()
        assert_valid(space, trials)
        opt.tell(trials, [float(r.a == "l3") + math.log2(r.units) / 10 for r in trials.itertuples()])
    assert opt.history["source"].tolist() == ["sobol", "sobol", "bo"]


def test_projection_rounds_in_raw_space_with_straight_through_gradients():
    space = SearchSpace([Float("f", 0, 1), Int("k", 1, 100, log=True), Categorical("c", ["x", "y", "z"])])
    X = torch.rand(64, space.encoded_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    X.requires_grad_(True)
    P = project_model_points(space, X)
    torch.testing.assert_close(P.detach(), space.to_model(space.decode(X.detach())), rtol=0, atol=1e-12)
    P.sum().backward()
    assert torch.equal(X.grad, torch.ones_like(X))
    combos = one_hot_combinations(space)
    assert combos == [{2: 1.0, 3: 0.0, 4: 0.0}, {2: 0.0, 3: 1.0, 4: 0.0}, {2: 0.0, 3: 0.0, 4: 1.0}]
    assert one_hot_combinations(SearchSpace([Float("f", 0, 1)])) is None


def test_prior_of_another_space_is_refused_naming_the_parameter():
    other = SearchSpace([Float("lr", 1e-4, 1e-1, log=True), Int("layers", 1, 5),
                         Categorical("opt", ["adam", "sgd", 3, True])])
    with pytest.raises(ConfigError, match="parameter 'layers': upper is 5 here, 4 in the other space"):
        Optimizer(other, prior=typed_prior())
    with pytest.raises(ConfigError, match="'x0'"):  # a box prior for a typed study
        Optimizer(MIXED, prior=random_prior(6))
    with pytest.raises(ConfigError, match="clash with the history"):
        Optimizer(SearchSpace([Float("y", 0, 1)]))


@pytest.mark.parametrize("trials, values, needle", [
    (pd.DataFrame({"lr": [0.01], "layers": [2]}), [1.0], "lack the column(s) ['opt']"),
    ([{"lr": 0.01, "layers": 2}], [1.0], "trial 0 lacks ['opt']"),
    (torch.zeros(1, 3), [1.0], "takes a DataFrame, a list of dicts"),
    ([{"lr": 0.5, "layers": 2, "opt": "sgd"}], [1.0], "'lr': row 0 holds 0.5"),
    ([{"lr": 0.01, "layers": 2, "opt": "rmsprop"}], [1.0], "'rmsprop'"),
    ([{"lr": 0.01, "layers": 2, "opt": "sgd"}], [1.0, 2.0], "one value per row"),
])
def test_tell_refuses_bad_raw_values(trials, values, needle):
    opt = Optimizer(MIXED, seed=0)
    with pytest.raises(InputDataError) as err:
        opt.tell(trials, values)
    assert needle in str(err.value)
    assert len(opt.history) == 0


def test_tell_takes_dicts_and_series_of_values():
    opt = Optimizer(MIXED, seed=0)
    opt.tell({"lr": 0.01, "layers": 2, "opt": True}, 1.5)
    opt.tell([{"opt": "adam", "layers": 4, "lr": 1e-3, "note": "ignored"}], pd.Series([0.5]))
    assert opt.history["asked"].tolist() == [False, False]
    assert opt.best == ({"lr": 1e-3, "layers": 4, "opt": "adam"}, 0.5)


def test_minimize_over_a_space_passes_dataframes():
    seen = []

    def fn(trials):
        seen.append(type(trials))
        return mixed_loss(trials)

    res = minimize(fn, MIXED, budget=4, prior=typed_prior(), seed=0, **FAST)
    assert seen == [pd.DataFrame] * 4 and isinstance(res.x, dict) and res.fun == min(res.history["y"])
