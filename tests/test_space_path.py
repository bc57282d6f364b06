"""The typed search space through the whole path: prior file, table family, optimiser.

Tiny untrained or barely trained priors only: these tests check the plumbing, not BO quality.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import small_config
from gp_helpers import random_prior

from metaprior.config import ReptileConfig
from metaprior.errors import ConfigError, PriorFileError
from metaprior.meta.reptile import meta_train
from metaprior.nets import init_params
from metaprior.prior import MetaPrior
from metaprior.priorfile import read_prior_file, write_prior_file
from metaprior.space import Categorical, Float, Int, SearchSpace
from metaprior.tasks import Logistic
from metaprior.tasks.family import make_generator

MIXED = SearchSpace([Float("lr", 1e-4, 1e-1, log=True), Int("layers", 1, 4),
                     Categorical("opt", ["adam", "sgd", 3, True])])


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

