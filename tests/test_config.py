"""ReptileConfig: defaults, the seed's table, replace, validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from metaprior.config import ReptileConfig
from metaprior.errors import ConfigError


def test_defaults_are_valid_and_frozen():
    cfg = ReptileConfig()
    assert cfg.hidden == (32, 32, 32)
    assert cfg.inner_optimizer in ("sgd", "adam") and cfg.outer_optimizer in ("sgd", "adam", "nesterov")
    assert cfg.chunk_size is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.inner_lr = 1.0  # type: ignore[misc]


def test_seed_table():
    cfg = ReptileConfig.seed()
    assert cfg.outer_steps == 10_000
    assert cfg.tasks_per_step == 1
    assert cfg.points_per_task == 100
    assert cfg.inner_steps == 50  # 5 epochs x 10 minibatches
    assert cfg.inner_batch_size == 10
    assert cfg.points_per_task // cfg.inner_batch_size * 5 == cfg.inner_steps
    assert cfg.inner_lr == 0.02
    assert cfg.outer_lr == 0.1
    assert cfg.hidden == (32, 32, 32)
    assert cfg.adapt_steps == 32
    assert cfg.grid_points is True
    assert cfg.inner_optimizer == "sgd" and cfg.outer_optimizer == "sgd"
    assert cfg.anneal is True


def test_replace_and_dict_roundtrip():
    cfg = dataclasses.replace(ReptileConfig.seed(), tasks_per_step=100, hidden=[16, 8])
    assert cfg.tasks_per_step == 100 and cfg.hidden == (16, 8)
    assert cfg.inner_steps == 50  # the other fields are kept
    assert ReptileConfig.from_dict(cfg.to_dict()) == cfg
    assert ReptileConfig(hidden=16).hidden == (16,)


@pytest.mark.parametrize(("field", "value"), [
    ("inner_lr", 0.0), ("inner_lr", -0.5), ("outer_lr", -1e-3), ("outer_lr", float("nan")),
    ("max_grad_norm", 0),
    ("outer_steps", 0), ("inner_steps", -3), ("tasks_per_step", 0), ("points_per_task", 0),
    ("inner_batch_size", 0), ("adapt_steps", -1), ("checkpoint_every", 0),
    ("outer_steps", 2.5), ("inner_steps", True),
    ("chunk_size", 0), ("hidden", (32, 0)), ("hidden", ()),
    ("inner_optimizer", "rmsprop"), ("outer_optimizer", "lbfgs"),
])
def test_invalid_values_raise_config_error_naming_them(field, value):
    with pytest.raises(ConfigError, match=field) as info:
        ReptileConfig(**{field: value})
    text = str(info.value)
    shown = repr(value) if not isinstance(value, tuple) else str(value)
    assert shown in text, text


def test_replace_validates_too():
    with pytest.raises(ConfigError, match=r"inner_lr.*-0\.1"):
        dataclasses.replace(ReptileConfig.seed(), inner_lr=-0.1)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="meta_batch_size"):
        ReptileConfig.from_dict({"meta_batch_size": 10})


@pytest.mark.parametrize(("field", "value"), [
    ("anneal", "no"), ("anneal", "False"), ("anneal", 0), ("anneal", None),
    ("grid_points", "no"), ("grid_points", 1),
    ("hidden", (True,)), ("hidden", (32, 2.0)), ("hidden", "32"), ("hidden", True),
    ("chunk_size", True), ("chunk_size", 2.0),
    ("inner_lr", True), ("outer_lr", False), ("max_grad_norm", "1"),
    ("inner_lr", float("inf")), ("outer_lr", float("inf")), ("max_grad_norm", float("-inf")),
    ("max_memory_mb", float("inf")), ("max_memory_mb", True),
    ("outer_steps", "10"), ("inner_optimizer", None), ("outer_optimizer", 1),
])
def test_truthy_strings_bools_and_infinities_are_refused(field, value):
    with pytest.raises(ConfigError, match=field) as info:
        ReptileConfig(**{field: value})
    assert repr(value) in str(info.value), str(info.value)


def test_numpy_scalars_are_numbers_and_are_normalised():
    np = pytest.importorskip("numpy")
    cfg = ReptileConfig(outer_steps=np.int64(100), inner_lr=np.float32(0.5), outer_lr=np.float64(1e-3),
                        hidden=[np.int32(8), 4], chunk_size=np.int16(3), anneal=np.bool_(False),
                        max_memory_mb=np.int64(64))
    assert cfg.outer_steps == 100 and type(cfg.outer_steps) is int
    assert cfg.inner_lr == 0.5 and type(cfg.inner_lr) is float
    assert cfg.hidden == (8, 4) and all(type(h) is int for h in cfg.hidden)
    assert cfg.chunk_size == 3 and cfg.anneal is False and type(cfg.max_memory_mb) is float
    # Normalised values survive the JSON round trip of a prior file's header.
    assert ReptileConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="outer_steps"):
        ReptileConfig(outer_steps=np.float64(3.0))


def test_every_field_has_exactly_one_declared_rule():
    from metaprior.config import PARAMETER_CONSTRAINTS

    assert set(PARAMETER_CONSTRAINTS) == {f.name for f in dataclasses.fields(ReptileConfig)}


def test_from_dict_needs_a_dict():
    with pytest.raises(ConfigError, match="list"):
        ReptileConfig.from_dict([1, 2])


def test_an_infinite_gradient_clip_means_no_clip_and_round_trips():
    """Older files may hold max_grad_norm=inf (clipping off); rates must stay finite."""
    cfg = ReptileConfig(max_grad_norm=float("inf"))
    assert ReptileConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in (float("nan"), -1.0, 0.0):
        with pytest.raises(ConfigError, match="max_grad_norm"):
            ReptileConfig(max_grad_norm=bad)
    with pytest.raises(ConfigError, match="outer_lr"):
        ReptileConfig(outer_lr=float("inf"))
