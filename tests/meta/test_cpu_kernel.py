"""The compiled CPU inner loop computes what the PyTorch inner loop computes, on every variant
this CPU runs (the one `auto` picks, and AVX2 forced on an AVX-512 machine)."""

from __future__ import annotations

import pytest
import torch

from metaprior import cpu_kernel
from metaprior.adaptation import adapt_batched, n_epochs, order_keys, padded_schedule
from metaprior.nets import init_params
from metaprior.tasks.family import make_generator

HIDDEN = (32, 32, 32)


def random_stacked(B: int, dim: int, seed: int) -> list[torch.Tensor]:
    g = make_generator(seed, "kernel-nets")
    per_task = [init_params(dim, HIDDEN, g) for _ in range(B)]
    return [torch.stack(ps) for ps in zip(*per_task, strict=True)]


def problem(dim: int, B: int = 6, n: int = 13, steps: int = 7, batch: int = 5, seed: int = 0):
    """Random networks and data; n not a multiple of batch, so epochs end on a short batch."""
    g = make_generator(seed, "kernel-data")
    params = random_stacked(B, dim, seed)
    X = torch.rand(B, n, dim, generator=g)
    Y = 3 * torch.randn(B, n, generator=g)
    mask = torch.rand(B, n, generator=g) < 0.8
    mask[:, 0] = True
    mask[1, 1:] = False  # one real point
    keys = order_keys(n_epochs(steps, n, batch), B, n, g)
    return params, X, Y, mask, keys, steps, batch


# Every variant this CPU runs; none (the PyTorch loop only) skips the comparisons.
HERE = cpu_kernel.supported() or ["pytorch"]


@pytest.fixture(params=HERE)
def variant(request, monkeypatch):
    """Forces one variant for the test, and checks it is the one that runs."""
    if request.param == "pytorch":
        pytest.skip("this CPU has no compiled variant (needs AVX2 and FMA): PyTorch loop only")
    monkeypatch.setenv("METAPRIOR_CPU_VARIANT", request.param)
    module = cpu_kernel.load()
    if module is None:
        pytest.skip("no C++ toolchain: the compiled inner loop is unavailable")
    assert cpu_kernel.variant() == module.isa == request.param
    return module


def both_paths(monkeypatch, params, X, Y, mask, keys, steps, batch, lr=0.05, clip=10.0):
    assert cpu_kernel.applies(params, X, batch, "sgd")
    fast = adapt_batched(params, X, Y, mask, keys, steps, batch, lr, "sgd", clip)
    monkeypatch.setenv("METAPRIOR_CPU_KERNEL", "0")
    assert not cpu_kernel.applies(params, X, batch, "sgd")
    slow = adapt_batched(params, X, Y, mask, keys, steps, batch, lr, "sgd", clip)
    return fast, slow


# The compiled loop runs groups of 16 (AVX-512) or 8 (AVX2) tasks interleaved across vector
# lanes (5-point tiles), a partial group when 7 of 16 (4 of 8) or more tasks are left, and the
# per-task loop for fewer. With 16 lanes, B = 6: per-task only; 10: one partial group; 20: a
# full group and 4 per-task; 25: a full and a partial group. With 8 lanes, B = 6: a partial
# group; 10: a full group and 2 per-task; 20: two full and a partial group; 25: three full and
# one per-task. n = 100 and batch 64: the minibatch padded to 65 rows, the loss on all points
# in two chunks. Widths 7, 13 and 29 run padded (to 8, 16, 32); 32 is compiled as is.
@pytest.mark.parametrize(("dim", "n", "batch", "B"),
                         [(1, 13, 5, 6), (3, 13, 5, 10), (2, 23, 10, 20), (6, 100, 64, 25),
                          (7, 13, 5, 6), (13, 23, 10, 10), (29, 13, 5, 20), (32, 23, 10, 25)])
@pytest.mark.parametrize("clip", [10.0, 0.3])  # 0.3 clips most steps
def test_compiled_loop_equals_the_pytorch_loop(monkeypatch, variant, dim, n, batch, B, clip):
    params, *rest = problem(dim, B=B, n=n, steps=9, batch=batch)
    before = [p.clone() for p in params]
    (phi, loss0), (ref, ref_loss0) = both_paths(monkeypatch, params, *rest, clip=clip)
    torch.testing.assert_close(loss0, ref_loss0, rtol=1e-5, atol=1e-6)
    for a, b, p in zip(phi, ref, before, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, p)  # it did adapt
    assert all(torch.equal(p, q) for p, q in zip(params, before, strict=True))  # not mutated


def test_a_task_whose_gradient_overflows_keeps_its_weights(monkeypatch, variant):
    params, X, Y, mask, keys, steps, batch = problem(2)
    Y[3] = 1e30  # squared residuals overflow float32
    (phi, _), (ref, _) = both_paths(monkeypatch, params, X, Y, mask, keys, steps, batch)
    for a, b, p in zip(phi, ref, params, strict=True):
        assert torch.equal(a[3], p[3]) and torch.equal(b[3], p[3])
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_it_applies_only_to_what_it_was_compiled_for():
    params, X, *_ = problem(2)
    assert cpu_kernel.applies(params, X, 10, "sgd") == cpu_kernel.enabled()
    assert not cpu_kernel.applies(params, X, 10, "adam")
    assert not cpu_kernel.applies(params, X.double(), 10, "sgd")
    assert not cpu_kernel.applies(params, X, cpu_kernel.MAX_BATCH + 1, "sgd")
    other = random_stacked(2, 2, 0)[:4]  # one hidden layer fewer
    assert not cpu_kernel.applies(other, X, 10, "sgd")
    wide = torch.rand(2, 5, cpu_kernel.MAX_DIM + 1)
    assert not cpu_kernel.applies(random_stacked(2, cpu_kernel.MAX_DIM + 1, 0), wide, 10, "sgd")


def test_the_variant_follows_the_cpu_and_the_environment(monkeypatch):
    monkeypatch.setattr(cpu_kernel, "_warned", set())
    monkeypatch.delenv("METAPRIOR_CPU_KERNEL", raising=False)
    monkeypatch.setattr(cpu_kernel.platform, "machine", lambda: "x86_64")
    for flags, auto in [({"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"},
                         "avx512"), ({"avx2", "fma"}, "avx2"), ({"avx", "sse4_2"}, "pytorch")]:
        monkeypatch.setattr(cpu_kernel, "cpu_flags", lambda flags=flags: frozenset(flags))
        monkeypatch.delenv("METAPRIOR_CPU_VARIANT", raising=False)
        assert cpu_kernel.variant() == auto  # the widest the CPU runs; none: PyTorch
        monkeypatch.setenv("METAPRIOR_CPU_VARIANT", "pytorch")
        assert cpu_kernel.variant() == "pytorch" and not cpu_kernel.enabled()
    # A variant the CPU lacks would crash on its first instruction: PyTorch, with a warning.
    monkeypatch.setenv("METAPRIOR_CPU_VARIANT", "avx512")
    monkeypatch.setattr(cpu_kernel, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.warns(RuntimeWarning, match="lacks avx512"):
        assert cpu_kernel.variant() == "pytorch"
    assert cpu_kernel.load("avx512") is None
    monkeypatch.setenv("METAPRIOR_CPU_VARIANT", "AVX2")
    assert cpu_kernel.variant() == "avx2"
    monkeypatch.setenv("METAPRIOR_CPU_KERNEL", "0")  # the older switch still turns it off
    assert cpu_kernel.variant() == "pytorch"
    monkeypatch.delenv("METAPRIOR_CPU_KERNEL")
    monkeypatch.setenv("METAPRIOR_CPU_VARIANT", "sse")
    with pytest.raises(ValueError, match="METAPRIOR_CPU_VARIANT"):
        cpu_kernel.variant()
    monkeypatch.setattr(cpu_kernel.platform, "machine", lambda: "arm64")
    monkeypatch.setenv("METAPRIOR_CPU_VARIANT", "auto")
    assert cpu_kernel.variant() == "pytorch"


@pytest.mark.parametrize(("n", "batch", "steps"), [(13, 5, 7), (3, 10, 9), (20, 10, 4)])
def test_padded_schedule_walks_each_epoch_in_key_order(n, batch, steps):
    *_, mask, keys, _, _ = problem(2, B=4, n=n, steps=steps, batch=batch)
    idx, wts = padded_schedule(keys, mask, steps, batch)
    assert idx.shape == wts.shape == (4, steps, min(batch, n))
    per_epoch = -(-n // batch)
    for step in range(steps):
        epoch, j = divmod(step, per_epoch)
        # the spec, step by step: real points in key order, then padding, batch at a time
        order = keys[epoch].masked_fill(~mask, float("inf")).argsort(-1)
        want = order[:, j * batch:(j + 1) * batch]
        real = mask.float().gather(1, want)
        k = want.shape[1]
        assert torch.equal(idx[:, step, :k], want)
        assert torch.equal(wts[:, step, :k], real / real.sum(-1, keepdim=True).clamp(min=1))
        assert (wts[:, step, k:] == 0).all()
    # one full epoch weights every real point of every task exactly once (by 1 / its batch size)
    if steps >= per_epoch:
        hits = torch.zeros(mask.shape).scatter_add_(
            1, idx[:, :per_epoch].flatten(1), (wts[:, :per_epoch] > 0).float().flatten(1))
        assert torch.equal(hits, mask.float())


@pytest.mark.parametrize("B", [20, 40])  # groups, partial groups and single tasks
def test_threads_split_the_work_without_changing_the_result(monkeypatch, variant, B):
    params, *rest = problem(2, B=B, n=23, steps=9, batch=10)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 3):  # torch's setting
            torch.set_num_threads(threads)
            assert cpu_kernel.threads() == threads
            results.append(adapt_batched(params, *rest, 0.05, "sgd", 10.0))
        torch.set_num_threads(1)
        monkeypatch.setenv("METAPRIOR_CPU_THREADS", "2")  # the loop's own, torch's left at 1
        assert cpu_kernel.threads() == 2
        results.append(adapt_batched(params, *rest, 0.05, "sgd", 10.0))
    finally:
        torch.set_num_threads(before)
    (one, loss_one), *others = results
    for phi, loss in others:
        assert torch.equal(loss_one, loss)
        assert all(torch.equal(a, b) for a, b in zip(one, phi, strict=True))
