"""Meta-training refuses bad data and bad settings before the work, and stops a diverged run
before anything is saved."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from helpers import small_config

from metaprior.errors import CheckpointError, ConfigError, TaskFamilyError, TrainingDivergedError
from metaprior.meta.checkpoint import CheckpointLock
from metaprior.meta.reptile import meta_train
from metaprior.tasks import FunctionFamily, Logistic
from metaprior.tasks.family import TaskFamily

CFG = small_config(outer_steps=20, tasks_per_step=4, points_per_task=10, inner_steps=2,
                   checkpoint_every=5)


def logistic_times(factor: float, poison: float | None = None) -> FunctionFamily:
    """Logistic outputs times `factor`; with `poison`, tasks whose x0 > 0 output it at x > 0."""
    base = Logistic()

    def fn(X, p):
        Y = base.fn(X, p) * factor
        if poison is not None:
            hit = (p[..., 2:3] > 0) & (X[..., 0] > 0)
            Y = torch.where(hit, torch.full_like(Y, poison), Y)
        return Y

    return FunctionFamily(fn, base.bounds, base.sample_params, name="scaled")


class LateNaN(TaskFamily):
    """A family (not a FunctionFamily) whose samples turn NaN from the third call on."""

    def __init__(self):
        self.base = Logistic()
        self.calls = 0
        super().__init__(self.base.bounds, "late-nan")

    def sample(self, n_tasks, n_points, generator, split="train", grid=False):
        batch = self.base.sample(n_tasks, n_points, generator, split, grid)
        self.calls += 1
        if self.calls >= 3:
            batch.Y[0, 0] = float("nan")
        return batch

    def held_out_tasks(self, n_tasks, seed=0):
        return self.base.held_out_tasks(n_tasks, seed)


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_family_outputs_are_refused(poison):
    family = logistic_times(1.0, poison)
    word = "NaN" if math.isnan(poison) else "inf"
    with pytest.raises(TaskFamilyError, match=word):
        meta_train(family, CFG, progress=False, shift_prior=False)
    # held-out tasks used to get y_min=nan
    with pytest.raises(TaskFamilyError, match=word):
        family.held_out_tasks(32)


def test_a_family_that_turns_nan_mid_run_stops_with_the_step(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(TaskFamilyError, match="outer step 1"):
        meta_train(LateNaN(), CFG, progress=False, shift_prior=False, checkpoint=ckpt)
    assert not ckpt.exists()


def test_outputs_near_1e200_give_finite_statistics_and_a_finite_prior():
    prior = meta_train(logistic_times(1e200), dataclasses.replace(CFG, outer_steps=5),
                       progress=False, shift_prior=False)
    assert math.isfinite(prior.y_std) and math.isfinite(prior.y_mean)
    small = meta_train(logistic_times(1.0), dataclasses.replace(CFG, outer_steps=5),
                       progress=False, shift_prior=False)
    assert prior.y_std == pytest.approx(small.y_std * 1e200, rel=1e-9)
    assert all(torch.isfinite(p).all() for p in prior.params)


@pytest.mark.parametrize("changes", [{"inner_lr": 1e38}, {"outer_lr": 1e30, "outer_optimizer": "sgd"},
                                     {"outer_lr": 1e38, "outer_optimizer": "adam"}])
def test_a_diverged_run_stops_before_anything_is_saved(tmp_path, changes):
    ckpt = tmp_path / "run.ckpt"
    cfg = dataclasses.replace(CFG, max_grad_norm=1e300, **changes)
    with pytest.raises(TrainingDivergedError, match="diverged at outer step") as info:
        meta_train(Logistic(), cfg, progress=False, checkpoint=ckpt)  # shift prior on
    assert str(list(changes.values())[0]) in str(info.value)
    if ckpt.exists():  # an earlier checkpoint stays as it was: finite
        state = torch.load(ckpt, weights_only=True)
        assert all(torch.isfinite(p).all() for p in state["theta"])
        assert f"outer step {state['step']}:" in str(info.value)
    assert not (tmp_path / "run.ckpt.lock").exists()


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_max_steps_must_be_a_non_negative_integer(bad):
    with pytest.raises(ConfigError, match="max_steps"):
        meta_train(Logistic(), CFG, progress=False, max_steps=bad, shift_prior=False)


@pytest.mark.parametrize("device", ["nonsense", "cuda:abc", "meta", 3.5])
def test_bad_device_is_a_config_error(device):
    with pytest.raises(ConfigError, match="device"):
        meta_train(Logistic(), CFG, device=device, progress=False, shift_prior=False)


def test_missing_cuda_index_is_a_config_error():
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match="cuda"):
        meta_train(Logistic(), CFG, device=f"cuda:{n + 3}", progress=False, shift_prior=False)


def test_a_network_too_large_for_memory_is_refused_before_allocation():
    cfg = dataclasses.replace(CFG, hidden=(100_000, 100_000))
    with pytest.raises(ConfigError, match=r"hidden=\(100000, 100000\).*GiB"):
        meta_train(Logistic(), cfg, progress=False, shift_prior=False)


def test_a_checkpoint_path_that_is_a_directory_fails_before_training(tmp_path):
    family = LateNaN()  # counts its samples: training would call it more than twice
    with pytest.raises(ConfigError, match="is a directory"):
        meta_train(family, CFG, progress=False, shift_prior=False, checkpoint=tmp_path)
    assert family.calls == 1  # only the output statistics were sampled


def test_a_second_run_on_the_same_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    with CheckpointLock(ckpt):  # as another run holds it
        with pytest.raises(CheckpointError, match="another run"):
            meta_train(Logistic(), CFG, progress=False, shift_prior=False, checkpoint=ckpt)
        assert not ckpt.exists()
    # Released: a run goes ahead, and leaves no lock file behind.
    meta_train(Logistic(), CFG, progress=False, shift_prior=False, checkpoint=ckpt, max_steps=5)
    assert ckpt.exists() and not (tmp_path / "run.ckpt.lock").exists()


def test_lock_is_released_when_training_fails(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(TaskFamilyError):
        meta_train(LateNaN(), CFG, progress=False, shift_prior=False, checkpoint=ckpt)
    with CheckpointLock(ckpt):
        pass


def test_resume_with_other_steps_names_the_field_not_the_whole_config(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    meta_train(Logistic(), CFG, progress=False, shift_prior=False, checkpoint=ckpt, max_steps=5)
    longer = dataclasses.replace(CFG, outer_steps=200)
    with pytest.raises(CheckpointError) as info:
        meta_train(Logistic(), longer, progress=False, shift_prior=False, checkpoint=ckpt,
                   resume=True)
    text = str(info.value)
    assert "outer_steps=20 where this run has 200" in text, text
    assert "inner_lr" not in text and "tasks_per_step" not in text
