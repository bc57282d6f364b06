"""The batched inner loop's hand-written gradient, and batched Reptile's meta-training."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import small_config

from metaprior.adaptation import adapt_batched, n_epochs, order_keys
from metaprior.config import OUTER_MOMENTUM, ReptileConfig
from metaprior.errors import ConfigError, TaskFamilyError
from metaprior.meta.evaluate import evaluate_few_shot
from metaprior.meta.reptile import meta_train
from metaprior.nets import forward, init_params, loss_and_grad, stack
from metaprior.tasks import Logistic, Sinusoid
from metaprior.tasks.family import make_generator


def random_stacked(B: int, dim: int, hidden: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    """B different networks (not copies), float64."""
    g = make_generator(seed, "nets")
    per_task = [init_params(dim, hidden, g, torch.float64) for _ in range(B)]
    return [torch.stack(ps) for ps in zip(*per_task, strict=True)]


@pytest.mark.parametrize(("dim", "hidden"), [(1, (32, 32, 32)), (3, (5, 4)), (2, (7,))])
def test_hand_written_gradient_equals_autograd(dim, hidden):
    B, m = 4, 9
    g = make_generator(0, "data")
    params = random_stacked(B, dim, hidden, seed=dim)
    X = torch.rand(B, m, dim, generator=g, dtype=torch.float64)
    Y = torch.randn(B, m, generator=g, dtype=torch.float64)
    mask = torch.rand(B, m, generator=g) < 0.7
    mask[:, 0] = True
    mask[1, 1:] = False  # a task with a single real point
    weight = mask.double() / mask.double().sum(-1, keepdim=True)

    loss, grads = loss_and_grad(params, X, Y, weight)

    leaves = [p.clone().requires_grad_(True) for p in params]
    ref_loss = (weight * (forward(leaves, X) - Y).square()).sum(-1)  # B
    # Tasks are independent, so the gradient of the sum is every task's own gradient.
    ref_grads = torch.autograd.grad(ref_loss.sum(), leaves)
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-12, atol=1e-12)
    assert len(grads) == len(ref_grads)
    for mine, ref in zip(grads, ref_grads, strict=True):
        assert mine.shape == ref.shape
        torch.testing.assert_close(mine, ref, rtol=1e-10, atol=1e-12)
    # Masked points carry no gradient: changing their targets changes nothing.
    Y2 = torch.where(mask, Y, Y + 100.0)
    loss2, grads2 = loss_and_grad(params, X, Y2, weight)
    torch.testing.assert_close(loss2, loss)
    for a, b in zip(grads, grads2, strict=True):
        torch.testing.assert_close(a, b)


def test_forward_plain_equals_stacked():
    params = init_params(2, (6, 5), make_generator(1), torch.float64)
    X = torch.rand(3, 7, 2, generator=make_generator(2), dtype=torch.float64)
    stacked = forward(stack(params, 3), X)
    plain = torch.stack([forward(params, X[i]) for i in range(3)])
    torch.testing.assert_close(stacked, plain)
    assert forward(params, X[0], features=True).shape == (7, 5)


def test_batched_adaptation_equals_one_task_at_a_time():
    B, n, steps, m = 5, 23, 12, 4
    params = stack(init_params(1, (8, 8), make_generator(0), torch.float64), B)
    g = make_generator(3)
    X = torch.rand(B, n, 1, generator=g, dtype=torch.float64)
    Y = torch.sin(6 * X[..., 0]) + 0.1 * torch.randn(B, n, generator=g, dtype=torch.float64)
    mask = torch.arange(n).unsqueeze(0) < torch.tensor([[23], [5], [1], [17], [10]])
    keys = order_keys(n_epochs(steps, n, m), B, n, g)
    for opt in ("sgd", "adam"):
        phi, loss0 = adapt_batched(params, X, Y, mask, keys, steps, m, 0.05, opt)
        for i in range(B):
            sl = slice(i, i + 1)
            one, one_loss0 = adapt_batched([p[sl] for p in params], X[sl], Y[sl], mask[sl],
                                           keys[:, sl], steps, m, 0.05, opt)
            torch.testing.assert_close(one_loss0, loss0[sl])
            for a, b in zip(one, phi, strict=True):
                torch.testing.assert_close(a[0], b[i], rtol=1e-10, atol=1e-12)
        # Adaptation lowers the tasks' loss, and the input weights are untouched.
        w = mask.double() / mask.double().sum(-1, keepdim=True)
        after, _ = loss_and_grad(phi, X, Y, w)
        assert after.mean() < loss0.mean()
    assert torch.equal(params[0][0], params[0][1])


def test_seeded_runs_are_reproducible():
    cfg = small_config(outer_steps=20)
    a = meta_train(Logistic(), cfg, seed=3, progress=False, shift_prior=False)
    b = meta_train(Logistic(), cfg, seed=3, progress=False, shift_prior=False)
    c = meta_train(Logistic(), cfg, seed=4, progress=False, shift_prior=False)
    assert all(torch.equal(p, q) for p, q in zip(a.params, b.params, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.params, c.params, strict=True))
    assert (a.y_mean, a.y_std) == (b.y_mean, b.y_std)
    assert a.stats["outer_steps_done"] == 20 and a.stats["task_adaptations"] == 160


def test_chunked_inner_loop_matches_unchunked():
    cfg = small_config(outer_steps=15, tasks_per_step=8)
    whole = meta_train(Sinusoid(), cfg, seed=1, progress=False, shift_prior=False)
    for chunk in (3, 8, 50):
        parts = meta_train(Sinusoid(), dataclasses.replace(cfg, chunk_size=chunk), seed=1,
                           progress=False, shift_prior=False)
        for p, q in zip(whole.params, parts.params, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def pseudo_gradient(fam, cfg, theta, seed: int, step: int) -> list[torch.Tensor]:
    """`theta - mean_i(phi_i)` over the tasks and point orders of outer step `step`, drawn from
    the same per-step stream meta_train uses."""
    B = cfg.tasks_per_step
    g = make_generator(seed, "step", step)
    batch = fam.sample(B, cfg.points_per_task, g, "train", grid=True)
    keys = order_keys(n_epochs(cfg.inner_steps, cfg.points_per_task, cfg.inner_batch_size), B,
                      cfg.points_per_task, g)
    X = theta.to_unit(batch.X).float()
    Y = theta.normalize_y(batch.Y).float()
    phi, _ = adapt_batched(stack(theta.params, B), X, Y, batch.mask, keys, cfg.inner_steps,
                           cfg.inner_batch_size, cfg.inner_lr)
    return [t - p.mean(0) for t, p in zip(theta.params, phi, strict=True)]


def test_sgd_outer_step_is_the_reptile_update():
    """One step with SGD and no annealing: theta_1 = theta_0 + eps * mean_i(phi_i - theta_0)."""
    fam = Logistic()
    cfg = small_config(outer_steps=1, tasks_per_step=6, outer_optimizer="sgd", outer_lr=0.5,
                       anneal=False, inner_steps=7)
    theta0 = meta_train(fam, cfg, seed=2, progress=False, max_steps=0, shift_prior=False)
    theta1 = meta_train(fam, cfg, seed=2, progress=False, shift_prior=False)
    for t0, t1, g in zip(theta0.params, theta1.params, pseudo_gradient(fam, cfg, theta0, 2, 0),
                         strict=True):
        torch.testing.assert_close(t1, t0 - 0.5 * g, rtol=1e-5, atol=1e-6)
        assert not torch.equal(t0, t1)


def test_nesterov_outer_steps_follow_the_momentum_recursion():
    """Unannealed: v_t = mu v_(t-1) + g_t and theta_t = theta_(t-1) - eps (g_t + mu v_t)."""
    fam = Logistic()
    cfg = small_config(outer_steps=2, tasks_per_step=4, outer_optimizer="nesterov",
                       outer_lr=0.3, anneal=False, inner_steps=5)
    theta = [meta_train(fam, cfg, seed=1, progress=False, max_steps=k,
                        shift_prior=False) for k in (0, 1, 2)]
    mu, eps = OUTER_MOMENTUM, 0.3
    v = [torch.zeros_like(p) for p in theta[0].params]
    for t in (0, 1):
        g = pseudo_gradient(fam, cfg, theta[t], 1, t)
        v = [mu * vi + gi for vi, gi in zip(v, g, strict=True)]
        for a, b, gi, vi in zip(theta[t].params, theta[t + 1].params, g, v, strict=True):
            torch.testing.assert_close(b, a - eps * (gi + mu * vi), rtol=1e-5, atol=1e-6)


def test_anneal_shrinks_late_steps():
    """With annealing the last of T steps uses eps / T, so it moves theta far less."""
    cfg = small_config(outer_steps=4, outer_optimizer="sgd", outer_lr=0.5)
    runs = [meta_train(Logistic(), cfg, seed=0, progress=False, max_steps=k,
                       shift_prior=False) for k in (3, 4)]
    done = meta_train(Logistic(), cfg, seed=0, progress=False, shift_prior=False)
    assert all(torch.equal(p, q) for p, q in zip(runs[1].params, done.params, strict=True))
    last = torch.cat([(q - p).flatten() for p, q in zip(runs[0].params, runs[1].params,
                                                       strict=True)])
    flat = dataclasses.replace(cfg, anneal=False)
    a = meta_train(Logistic(), flat, seed=0, progress=False, max_steps=3, shift_prior=False)
    b = meta_train(Logistic(), flat, seed=0, progress=False, shift_prior=False)
    unannealed = torch.cat([(q - p).flatten() for p, q in zip(a.params, b.params, strict=True)])
    # Same theta_3 is not guaranteed (earlier steps differ too), but the ratio of step sizes
    # is about 1/4 (eps/4 vs eps) for similar pseudo-gradients.
    assert last.norm() < 0.5 * unannealed.norm()


@pytest.mark.quality
def test_meta_init_beats_random_init(logistic_prior):
    df = evaluate_few_shot(logistic_prior, Logistic(), shots=range(1, 11), n_tasks=32, seed=1)
    mse = df.groupby("method").mse.mean()
    assert mse["meta_adapted"] < 0.5 * mse["random_adapted"]
    assert mse["meta_adapted"] < mse["meta_unadapted"]
    # More shots help the meta-init.
    by_k = df[df.method == "meta_adapted"].set_index("shots").mse
    assert by_k[10] < by_k[1]
    assert logistic_prior.stats["loss_history"][-1] < logistic_prior.stats["loss_history"][0]


def test_bad_arguments():
    with pytest.raises(TaskFamilyError, match="TaskFamily"):
        meta_train("logistic", small_config(), progress=False, shift_prior=False)
    with pytest.raises(ConfigError, match="dict"):
        meta_train(Logistic(), {"outer_steps": 2}, progress=False, shift_prior=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            meta_train(Logistic(), small_config(), device="cuda", progress=False, shift_prior=False)


def test_memory_budget_derives_a_smaller_chunk_with_the_same_result():
    from metaprior.meta.memory import chunk_size_for_memory
    from metaprior.meta.reptile import ReptileTrainer

    cfg = dataclasses.replace(small_config(outer_steps=4), tasks_per_step=64)
    budget = 1.0  # MiB: a few tasks per chunk, far below what 64 at once would need
    chunk = chunk_size_for_memory(cfg, 1, budget)
    assert 1 <= chunk < 64
    bounded = dataclasses.replace(cfg, max_memory_mb=budget)
    assert ReptileTrainer(Sinusoid(), bounded, 1, None).chunk == chunk
    whole = meta_train(Sinusoid(), cfg, seed=1, progress=False, shift_prior=False)
    parts = meta_train(Sinusoid(), bounded, seed=1, progress=False, shift_prior=False)
    for a, b in zip(whole.params, parts.params, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True])
def test_memory_budget_must_be_positive(bad):
    with pytest.raises(ConfigError, match="max_memory_mb"):
        dataclasses.replace(ReptileConfig(), max_memory_mb=bad)
