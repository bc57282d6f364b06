"""One short GPU check: the CUDA path agrees with CPU, then throughput and memory on CUDA.

  1. correctness: meta_train on a small Branin config on cpu and cuda with the same seed
     (weights within ATOL_TRAIN); MetaPrior.adapt on cuda vs cpu; MetaPriorModel's posterior
     (mode "both", float64 GP) on cuda vs cpu;
  2. throughput (task-adaptations/s) and torch.cuda.max_memory_allocated at B = 100, 1,000,
     10,000 with inner_steps=50, eager and with `torch.compile` of the inner step's
     `loss_and_grad` (fixed shapes: dynamic=False);
  3. one CPU reference at B = 1,000.

Every measurement is wrapped: a failure prints `FAILED <name>: <error>` and the script goes on.
Exit status: 0 when every correctness check passed (or no GPU is present), 1 otherwise.
Runs in about 1-3 minutes on an H100 (torch.compile's first compilations dominate).

Usage:
    python benchmarks/gpu_check.py [--budget-s 240]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import traceback

import torch

ATOL_TRAIN = 1e-4  # float32 weights after 20 Adam outer steps; GPU sums in another order
ATOL_ADAPT = 1e-4  # float32 weights after 64 inner steps
ATOL_POSTERIOR = 1e-4  # float64 GP on float32 network features, original units of Branin / 100
FAILURES: list[str] = []
DEVICE = "cuda"  # `--device cpu` dry-runs every code path on a CPU-only host (cpu vs cpu)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def attempt(name: str, fn, correctness: bool = False):
    """Run one measurement; report and swallow any failure so the next one still runs."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the point is to keep going
        print(f"FAILED {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(limit=3)
        if correctness:
            FAILURES.append(name)
        return None


def check(name: str, diff: float, atol: float) -> None:
    ok = diff <= atol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |cuda - cpu| = {diff:.3g} (atol {atol:g})",
          flush=True)
    if not ok:
        FAILURES.append(name)


def max_diff(a, b) -> float:
    return max(float((p.cpu() - q.cpu()).abs().max()) for p, q in zip(a, b, strict=True))


# ---- 1. correctness ----------------------------------------------------------------------
def small_config():
    from metaprior.config import ReptileConfig

    return ReptileConfig(outer_steps=20, tasks_per_step=16, points_per_task=20, inner_steps=8,
                         inner_batch_size=10, hidden=(32, 32), checkpoint_every=10**6)


def check_training():
    from metaprior.meta.reptile import meta_train
    from metaprior.tasks import Branin

    cfg = small_config()
    cpu = meta_train(Branin(), cfg, seed=0, device="cpu", progress=False, shift_prior=False)
    gpu = meta_train(Branin(), cfg, seed=0, device=DEVICE, progress=False, shift_prior=False)
    check("meta_train weights", max_diff(gpu.params, cpu.params), ATOL_TRAIN)
    return cpu


def check_adapt(prior):
    from metaprior.space import box_from_unit
    from metaprior.tasks import Branin

    task = Branin().held_out_tasks(1, seed=0)[0]
    g = torch.Generator().manual_seed(0)
    X = box_from_unit(torch.rand(8, 2, generator=g, dtype=torch.float64), task.bounds)
    Y = task.fn(X).unsqueeze(-1)
    cpu = prior.adapt(X, Y)
    gpu = prior.to(DEVICE).adapt(X, Y)
    assert gpu.params[0].device.type == DEVICE, "adapted weights left the device"
    check("MetaPrior.adapt weights", max_diff(gpu.params, cpu.params), ATOL_ADAPT)
    return X, Y


def check_posterior(prior, X, Y):
    from metaprior.gp.model import MetaPriorModel
    from metaprior.space import box_from_unit

    g = torch.Generator().manual_seed(1)
    Xt = box_from_unit(torch.rand(32, 2, generator=g, dtype=torch.float64), prior.bounds)
    out = {}
    for device in ("cpu", DEVICE):
        model = MetaPriorModel(X.to(device), Y.to(device), prior=prior.to(device), mode="both")
        model.eval()
        with torch.no_grad():
            post = model.posterior(Xt.to(device))
            out[device] = (post.mean.cpu(), post.variance.cpu())
    scale = float(Y.std())
    check("MetaPriorModel posterior mean (/ std Y)",
          float((out[DEVICE][0] - out["cpu"][0]).abs().max()) / scale, ATOL_POSTERIOR)
    check("MetaPriorModel posterior variance (/ var Y)",
          float((out[DEVICE][1] - out["cpu"][1]).abs().max()) / scale**2, ATOL_POSTERIOR)


# ---- 2. throughput -----------------------------------------------------------------------
def throughput(B: int, device: str, steps: int, chunk: int | None = None) -> dict:
    """Rate of `steps` outer steps after a 1-step warm-up at the same shapes."""
    from metaprior.config import ReptileConfig
    from metaprior.meta.reptile import meta_train
    from metaprior.tasks import Branin

    cfg = ReptileConfig(outer_steps=steps, tasks_per_step=B, inner_steps=50,
                        checkpoint_every=10**6, chunk_size=chunk)
    meta_train(Branin(), dataclasses.replace(cfg, outer_steps=1), seed=1, device=device,
               progress=False, shift_prior=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    prior = meta_train(Branin(), cfg, seed=0, device=device, progress=False,
                       shift_prior=False)
    mem = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") \
        else float("nan")
    return {"rate": prior.stats["task_adaptations_per_s"], "seconds": prior.stats["seconds"],
            "mem_mb": mem}


def use_compiled(on: bool) -> bool:
    """Swap the inner step's `loss_and_grad` for a compiled one (or back)."""
    import metaprior.adaptation as adaptation
    import metaprior.nets as nets

    if on:
        # Shapes are fixed per B (chunk x 10 minibatch, chunk x 50 full data): one graph each,
        # 2 per B; raise the recompile limit (renamed across torch versions) above 6.
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 32))
        adaptation.loss_and_grad = torch.compile(nets.loss_and_grad, dynamic=False)
    else:
        adaptation.loss_and_grad = nets.loss_and_grad
    return True


def report(label: str, B: int, r: dict | None) -> None:
    if r is not None:
        print(f"{label:>9}  B={B:>6}  {r['rate']:>12,.0f} task-adaptations/s  "
              f"{r['seconds']:>7.2f} s  peak {r['mem_mb']:>8.1f} MiB", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-s", type=float, default=240,
                        help="skip the remaining throughput runs after this many seconds")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: dry-run the script's code paths without a GPU")
    parser.add_argument("--sizes", default="100,1000,10000", help="meta-batch sizes B")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    t_start = time.perf_counter()
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no GPU present: nothing to check (exit 0)")
        return 0
    if DEVICE == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}; {os.cpu_count()} CPUs")
        # Full float32 matmuls: TF32 would make the CPU comparison meaningless.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    section("1. correctness: cuda vs cpu, same seed")
    prior = attempt("meta_train cuda vs cpu", check_training, correctness=True)
    data = attempt("MetaPrior.adapt cuda vs cpu", lambda: check_adapt(prior), True) \
        if prior is not None else None
    if data is not None:
        attempt("MetaPriorModel posterior cuda vs cpu", lambda: check_posterior(prior, *data),
                True)

    section(f"2. throughput on {DEVICE}, inner_steps=50, P=50, hidden 32x32x32")
    default_steps = {100: 20, 1000: 10, 10_000: 5}
    steps = {int(b): default_steps.get(int(b), 3) for b in args.sizes.split(",")}
    for compiled in (False, True):
        label = "compiled" if compiled else "eager"
        if attempt(f"torch.compile setup ({label})", lambda c=compiled: use_compiled(c)) is None:
            continue
        for B, n in steps.items():
            if time.perf_counter() - t_start > args.budget_s:
                print(f"SKIPPED {label} B={B}: past the {args.budget_s:.0f} s budget")
                continue
            t0 = time.perf_counter()
            r = attempt(f"{label} B={B}", lambda B=B, n=n: throughput(B, DEVICE, n))
            report(label, B, r)
            if compiled and r is not None:
                print(f"           (incl. compilation, the call took "
                      f"{time.perf_counter() - t0:.1f} s)")
    use_compiled(False)

    section("3. CPU reference")
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    report(f"cpu x{torch.get_num_threads()}", 1000,
           attempt("cpu B=1000", lambda: throughput(1000, "cpu", 2)))

    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; "
          f"correctness failures: {FAILURES or 'none'}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    raise SystemExit(main())
