"""Task inference by translation: the meta-learned shift prior and the posterior over shifts.

The family here is built from the prior's own network, `y = a * net(u - t) + b` with known
`(t, a, b)`, so the right answers are known exactly.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import branin_prior, quick_config

from metaprior.errors import ConfigError, InputDataError
from metaprior.meta.reptile import meta_train
from metaprior.prior import MetaPrior
from metaprior.shift import (
    ShiftPrior,
    _profile_affine,
    attach_shift_prior,
    estimate_shift_prior,
    infer_shift,
)
from metaprior.tasks import Forrester
from metaprior.tasks.synthetic import FunctionFamily

T_MEAN = torch.tensor([0.03, -0.02], dtype=torch.float64)
T_SD = torch.tensor([0.05, 0.03], dtype=torch.float64)


def shifted_family(prior: MetaPrior) -> FunctionFamily:
    """Tasks `a * net(u - t) + b` (normalised outputs mapped back to the prior's units)."""

    def fn(X, p):
        U = prior.to_unit(X)
        t, a, b = p[..., :2].unsqueeze(-2), p[..., 2:3], p[..., 3:4]
        z = prior.net(U - t)
        return prior.unnormalize_y(a * z + b)

    def sample(n, g):
        t = T_MEAN + T_SD * torch.randn(n, 2, generator=g, dtype=torch.float64)
        a = 1 + 0.05 * torch.randn(n, 1, generator=g, dtype=torch.float64)
        b = 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
        return torch.cat([t, a, b], -1)

    return FunctionFamily(fn, prior.bounds, sample, name="shifted-net")


@pytest.fixture(scope="module")
def prior_and_family():
    prior = branin_prior()
    prior = MetaPrior(prior.params, prior.bounds, prior.y_mean, prior.y_std, prior.config)
    family = shifted_family(prior)
    attach_shift_prior(prior, family, n_tasks=64, n_points=400)
    return prior, family


def test_estimate_recovers_the_spread_of_known_shifts(prior_and_family):
    prior, _ = prior_and_family
    sp = ShiftPrior.of(prior)
    # 64 tasks: the sample mean is within ~3 standard errors (sd / 8) of the truth
    mean = torch.tensor(sp.mean, dtype=torch.float64)
    torch.testing.assert_close(mean, T_MEAN, atol=float(3 * T_SD.max() / 8), rtol=0)
    sd = torch.tensor(sp.cov).diagonal().sqrt()
    assert ((sd / T_SD - 1).abs() < 0.35).all(), sd
    # the tasks are exact shifts of the network: nothing is left near their minima
    assert sp.resid_sd < 1e-3
    assert 0.03 < sp.scale_sd < 0.08 and 0.06 < sp.offset_sd < 0.15


def test_posterior_concentrates_on_the_true_shift(prior_and_family):
    prior, family = prior_and_family
    t_true = torch.tensor([0.08, -0.05], dtype=torch.float64)
    U = torch.rand(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = 1.05 * prior.net(U - t_true) + 0.02
    particles = infer_shift(prior, U, y, seed=0)
    assert particles.t.shape == (256, 2)
    assert (particles.t.mean(0) - t_true).abs().max() < 0.01
    assert particles.t.std(0).max() < 0.01
    assert (particles.a.mean() - 1.05).abs() < 0.02


def test_without_data_the_particles_follow_the_prior(prior_and_family):
    prior, _ = prior_and_family
    sp = ShiftPrior.of(prior)
    particles = infer_shift(prior, torch.empty(0, 2, dtype=torch.float64),
                            torch.empty(0, dtype=torch.float64), n_particles=2000, seed=1)
    sd = torch.tensor(sp.cov).diagonal().sqrt()
    assert ((particles.t.std(0) / sd - 1).abs() < 0.15).all()
    assert ((particles.t.mean(0) - torch.tensor(sp.mean)).abs() < 0.2 * sd).all()


def test_inference_is_reproducible(prior_and_family):
    prior, _ = prior_and_family
    U = torch.rand(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = prior.net(U)
    a, b = infer_shift(prior, U, y, seed=3), infer_shift(prior, U, y, seed=3)
    assert torch.equal(a.t, b.t) and torch.equal(a.a, b.a)
    c = infer_shift(prior, U, y, seed=4)
    assert not torch.equal(a.t, c.t)


def test_shift_prior_survives_the_prior_file(prior_and_family, tmp_path):
    prior, _ = prior_and_family
    path = tmp_path / "p.prior"
    prior.save(path)
    assert ShiftPrior.of(MetaPrior.load(path)) == ShiftPrior.of(prior)


def test_an_old_file_with_the_shift_prior_in_its_stats_still_loads(prior_and_family, tmp_path):
    """Before the shift prior became a field of the header, prior files kept it in `stats`."""
    from metaprior.priorfile import write_prior_file

    prior, _ = prior_and_family
    header = prior.header()
    header["stats"] = {**header["stats"], "shift_prior": header.pop("shift_prior")}
    path = tmp_path / "old.prior"
    write_prior_file(path, {f"param.{i:03d}": p.float() for i, p in enumerate(prior.params)},
                     header)
    loaded = MetaPrior.load(path)
    assert loaded.shift_prior == prior.shift_prior and "shift_prior" not in loaded.stats


def test_a_prior_without_shift_prior_is_refused():
    prior = branin_prior()
    bare = MetaPrior(prior.params, prior.bounds, prior.y_mean, prior.y_std, prior.config)
    assert bare.shift_prior is None
    with pytest.raises(ConfigError, match="attach_shift_prior"):
        infer_shift(bare, torch.rand(2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("field, value", [("resid_sd", -1.0), ("scale_sd", 0.0),
                                          ("offset_sd", float("nan"))])
def test_invalid_shift_prior_values_are_refused(prior_and_family, field, value):
    sp = ShiftPrior.of(prior_and_family[0])
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(sp, **{field: value})


def test_bad_sizes_are_refused(prior_and_family):
    prior, family = prior_and_family
    with pytest.raises(ConfigError, match="n_points"):
        estimate_shift_prior(prior, family, n_tasks=8, n_points=5)
    with pytest.raises(ConfigError, match="dimension 1, the prior 2"):
        estimate_shift_prior(prior, Forrester())


def test_meta_train_attaches_a_shift_prior():
    sp = ShiftPrior.of(branin_prior())
    assert sp.dim == 2 and sp.n_tasks == 64
    # Branin's variants move by up to 0.1 of the box: the learned spread is about that
    assert all(0.02 < v**0.5 < 0.1 for v in torch.tensor(sp.cov).diagonal().tolist())


def test_meta_train_can_skip_it_and_unfinished_runs_skip_it():
    skipped = meta_train(Forrester(), quick_config(3), progress=False, shift_prior=False)
    unfinished = meta_train(Forrester(), quick_config(3), progress=False, max_steps=2)
    finished = meta_train(Forrester(), quick_config(3), progress=False)
    assert skipped.shift_prior is None and unfinished.shift_prior is None
    assert ShiftPrior.of(finished).dim == 1


def test_particles_match_a_grid_posterior(prior_and_family):
    """Three points leave a posterior of finite width: the particles' mean and spread must match
    a brute-force grid of the same density (prior x likelihood with a, b integrated out)."""
    prior, _ = prior_and_family
    original = ShiftPrior.of(prior)
    sp = dataclasses.replace(original, resid_sd=0.02)  # wide enough for a grid to resolve
    prior.shift_prior = sp
    try:
        U = torch.tensor([[0.2, 0.7], [0.3, 0.8], [0.1, 0.9]], dtype=torch.float64)
        y = prior.net(U - torch.tensor([0.05, -0.03], dtype=torch.float64))
        particles = infer_shift(prior, U, y, n_particles=1000, seed=0)
        axis = torch.linspace(-0.25, 0.25, 201, dtype=torch.float64)
        grid = torch.cartesian_prod(axis, axis) + torch.tensor(sp.mean, dtype=torch.float64)
        _, log_lik = _profile_affine(prior.net(U.unsqueeze(0) - grid.unsqueeze(1)), y, sp)
        diff = grid - torch.tensor(sp.mean, dtype=torch.float64)
        prec = torch.linalg.inv(torch.tensor(sp.cov, dtype=torch.float64))
        w = torch.softmax(log_lik - 0.5 * ((diff @ prec) * diff).sum(-1), 0)
        g_mean = (w.unsqueeze(-1) * grid).sum(0)
        g_sd = (w.unsqueeze(-1) * (grid - g_mean) ** 2).sum(0).sqrt()
        assert ((particles.t.mean(0) - g_mean).abs() < 0.3 * g_sd + 2e-3).all(), (
            particles.t.mean(0), g_mean, g_sd)
        ratio = particles.t.std(0) / g_sd
        assert ((ratio > 0.6) & (ratio < 1.5)).all(), (particles.t.std(0), g_sd)
    finally:
        prior.shift_prior = original


def test_bad_inference_inputs_are_refused(prior_and_family):
    prior, _ = prior_and_family
    U = torch.rand(3, 2, dtype=torch.float64)
    with pytest.raises(InputDataError, match="shape"):
        infer_shift(prior, U, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(InputDataError, match="NaN"):
        infer_shift(prior, U, torch.tensor([0.0, float("nan"), 1.0], dtype=torch.float64))
    with pytest.raises(ConfigError, match="n_particles"):
        infer_shift(prior, U, torch.zeros(3, dtype=torch.float64), n_particles=0)


def test_bad_shift_prior_contents_are_refused(prior_and_family):
    sp = ShiftPrior.of(prior_and_family[0])
    with pytest.raises(ConfigError, match="positive definite"):
        dataclasses.replace(sp, cov=[[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ConfigError, match="exactly the fields"):
        ShiftPrior.from_dict({**sp.to_dict(), "extra": 1})
