"""Speed of batched Reptile against a sequential reference that runs the seed's algorithm.

The reference is written from the seed's description (reptile-torch README and the paper), not
from its code: one Logistic task per outer step, an `nn.Module` MLP 1-32-32-32-1 with tanh, a
Python loop of 5 epochs x 10 minibatches of 10 points (`torch.optim.SGD`, `nn.MSELoss`,
`loss.backward()`), state-dict copies for theta and phi, and the outer update
`theta += eps_t * (phi - theta)` with eps annealed linearly from 0.1 to 0.

One deviation, so that both are scored by the same `evaluate_few_shot`: the reference works in
metaprior's normalised space (inputs mapped to [0, 1], outputs standardised with the family
statistics that `meta_train` estimates). It costs the same as raw units.

Every run spends the same number of task adaptations (default 1000: one outer step at
B=1000), is timed over its outer steps only, and is then scored on held-out tasks (K = 1..10,
32 tasks, meta-init adapted with the seed's 32 steps). Batched runs use the seed's outer SGD
step (eps 0.1, and 1.0 at B >= 100), for B >= 10 our default outer optimiser, Adam, and for
B >= 100 the SGD step with Nesterov momentum; each with the PyTorch inner loop and with the
compiled CPU one (`metaprior.cpu_kernel`), in the variant `--variant` names (default: the one
this CPU picks; `avx2` on an AVX-512 machine measures what an AVX2-only CPU would run, up to
the core's other differences). Every table is printed with the CPU's model and vector
features, and the CSV keeps them (`cpu`, `variant` columns): speed figures are only comparable
on one kind of CPU. With `--threads 2` the compiled loop splits its tasks over two threads of
its own while torch's small tensor ops around it stay on one (`--torch-threads`); the PyTorch
loop gets two torch threads.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.reptile_speed          # about 3 minutes
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.reptile_speed --quick  # seconds
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.reptile_speed --variant avx2 \
        --batch-sizes 1 10 100 1000 --paths pytorch compiled --outers sgd
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.reptile_speed --loop-only \
        --dims 1 10 32 --batch-sizes 2 30 1000   # the inner loop alone, every variant
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.machine import cpu_description  # noqa: E402
from metaprior import cpu_kernel  # noqa: E402
from metaprior.adaptation import adapt_batched, n_epochs, order_keys  # noqa: E402
from metaprior.config import ReptileConfig  # noqa: E402
from metaprior.meta.evaluate import evaluate_few_shot  # noqa: E402
from metaprior.meta.reptile import meta_train, output_stats  # noqa: E402
from metaprior.nets import init_params  # noqa: E402
from metaprior.prior import MetaPrior  # noqa: E402
from metaprior.tasks import Logistic  # noqa: E402
from metaprior.tasks.family import make_generator  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "reptile_speed.csv"
SEED_EPOCHS = 5  # the seed's "inner batch size": epochs over a task's points
# Outer Adam step size for the extra rows: among 0.01-0.1 at B=100 and 1,000 adaptations, 0.05
# and 0.1 reached the lowest held-out MSE (0.08-0.10); larger B gets too few steps to care.
ADAM_OUTER_LR = 0.1
# Outer step of the Nesterov rows (momentum 0.9): among 0.1, 0.3, 0.6 and 1.0 at B=1000 and
# 100,000 adaptations (seeds 0 and 1), 1.0 reached the lowest held-out MSE.
NESTEROV_OUTER_LR = 1.0
OUTERS = ("sgd", "adam", "nesterov")
RAW_COLUMNS = ["method", "B", "outer", "outer_lr", "outer_steps", "task_adaptations", "seed",
               "seconds", "cpu_seconds", "mse_meta_adapted", "mse_meta_unadapted",
               "mse_random_adapted", "variant", "cpu"]
# Inner-loop implementations: `meta_train`'s PyTorch loop and the compiled CPU loop
# (`metaprior.cpu_kernel`), which `meta_train` uses by default where it applies.
PATHS = ("pytorch", "compiled")
# set per run, restored after
ENV = ("METAPRIOR_CPU_KERNEL", "METAPRIOR_CPU_VARIANT", "METAPRIOR_CPU_THREADS")


# ---- the sequential reference -------------------------------------------------------------
def seed_mlp(hidden: tuple[int, ...]) -> nn.Sequential:
    """The seed's network: 1 -> hidden... -> 1 with tanh, nn.Linear's default init."""
    layers: list[nn.Module] = []
    width = 1
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def sequential_reptile(outer_steps: int, cfg: ReptileConfig, y_mean: float, y_std: float,
                       seed: int) -> tuple[nn.Sequential, float, float]:
    """Plain Reptile, one task per outer step, a Python loop of SGD steps.

    Returns the meta-trained module, and the wall-clock and CPU seconds of the outer loop.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = seed_mlp(cfg.hidden)
    P, m = cfg.points_per_task, cfg.inner_batch_size
    x = torch.linspace(-4.0, 4.0, P).unsqueeze(-1)  # the seed's fixed grid
    u = (x + 4.0) / 8.0
    loss_fn = nn.MSELoss()
    per_epoch = math.ceil(P / m)
    t0, c0 = time.perf_counter(), time.process_time()
    for t in range(outer_steps):
        theta = {k: v.clone() for k, v in model.state_dict().items()}
        amp, rate = 1 + 9 * torch.rand(2, generator=g)  # L, k ~ U[1, 10]
        mid = 2 * torch.rand(1, generator=g) - 1  # x0 ~ U[-1, 1]
        y = amp / (1 + torch.exp(-rate * (x - mid)))
        z = (y - y_mean) / y_std
        opt = torch.optim.SGD(model.parameters(), lr=cfg.inner_lr)
        step = 0
        while step < cfg.inner_steps:
            perm = torch.randperm(P, generator=g)
            for j in range(per_epoch):
                if step == cfg.inner_steps:
                    break
                idx = perm[j * m:(j + 1) * m]
                opt.zero_grad()
                loss = loss_fn(model(u[idx]), z[idx])
                loss.backward()
                opt.step()
                step += 1
        phi = model.state_dict()
        eps = cfg.outer_lr * (1 - t / outer_steps) if cfg.anneal else cfg.outer_lr
        model.load_state_dict({k: theta[k] + eps * (phi[k] - theta[k]) for k in theta})
    return model, time.perf_counter() - t0, time.process_time() - c0


def module_to_prior(model: nn.Sequential, cfg: ReptileConfig, y_mean: float,
                    y_std: float) -> MetaPrior:
    """Wrap the module's weights as a MetaPrior ([W_0, b_0, ...], same layout)."""
    params = [p.detach().clone() for p in model.parameters()]
    return MetaPrior(params, Logistic().bounds, y_mean, y_std, cfg, "logistic")


# ---- the benchmark ------------------------------------------------------------------------
def few_shot_scores(prior: MetaPrior, shots, n_tasks: int) -> dict:
    df = evaluate_few_shot(prior, Logistic(), shots=shots, n_tasks=n_tasks, seed=1)
    mean = df.groupby("method").mse.mean()
    return {f"mse_{k}": float(v) for k, v in mean.items()}


def run(adaptations: int, batch_sizes: list[int], extra_lr: float, shots, n_tasks: int,
        seed: int, threads: int = 1, adam_lr: float = ADAM_OUTER_LR,
        paths: tuple[str, ...] = PATHS, outers: tuple[str, ...] = OUTERS,
        reference: pd.DataFrame | None = None, variant: str = "auto",
        torch_threads: int = 1) -> pd.DataFrame:
    """All rows; with `reference` (an earlier run's rows, same seed and budget) its rows are kept
    and its sequential run is reused instead of rerun. `variant`: the compiled loop's
    (`metaprior.cpu_kernel.CHOICES` less "pytorch"). `threads`: the PyTorch loop's torch
    threads, and the compiled loop's own (`METAPRIOR_CPU_THREADS`) with torch at
    `torch_threads` around it."""
    cpu = cpu_description()
    family = Logistic()
    base = ReptileConfig.seed()  # B=1, 100-point grid, 50 SGD steps at 0.02, eps 0.1 annealed
    y_mean, y_std = output_stats(family, base.points_per_task, seed)
    if reference is not None:
        rows = reference[RAW_COLUMNS].to_dict("records")
        print(f"  sequential: reused from the reference ({rows[0]['seconds']:.1f} s)", flush=True)
    else:
        model, seconds, cpu_s = sequential_reptile(adaptations, base, y_mean, y_std, seed)
        prior = module_to_prior(model, base, y_mean, y_std)
        rows = [{"method": "sequential (seed)", "B": 1, "outer": "sgd",
                 "outer_lr": base.outer_lr, "outer_steps": adaptations,
                 "task_adaptations": adaptations, "seed": seed, "seconds": seconds,
                 "cpu_seconds": cpu_s, **few_shot_scores(prior, shots, n_tasks),
                 "variant": "-", "cpu": cpu}]
        print(f"  sequential: {adaptations} adaptations in {seconds:.1f} s", flush=True)

    # Averaging B task deltas cuts the pseudo-gradient's noise, so large B affords a larger
    # eps; the seed's 0.1 is also run at every B for the like-for-like comparison.
    # The outer Adam step of our default config is run too: its per-weight step size does not
    # shrink with the pseudo-gradient, so fewer, better-averaged outer steps still travel far.
    # Nesterov momentum (0.9) on the seed's SGD step: at large B the averaged pseudo-gradient
    # is accurate but the outer steps are few, and momentum lets each travel further.
    runs = [(B, "sgd", base.outer_lr) for B in batch_sizes]
    runs += [(B, "sgd", extra_lr) for B in batch_sizes if B >= 100 and extra_lr]
    runs += [(B, "adam", adam_lr) for B in batch_sizes if B >= 10 and adam_lr]
    runs += [(B, "nesterov", NESTEROV_OUTER_LR) for B in batch_sizes if B >= 100]
    runs = [r for r in runs if r[1] in outers]
    user_setting = {k: os.environ.get(k) for k in ENV}  # restored after the runs
    os.environ["METAPRIOR_CPU_KERNEL"] = "1"
    os.environ["METAPRIOR_CPU_VARIANT"] = variant
    compiled = cpu_kernel.variant()
    if "compiled" in paths and (compiled == "pytorch" or cpu_kernel.load() is None):
        print(f"  no compiled inner loop ({variant}) on this CPU: PyTorch path only", flush=True)
        paths = tuple(p for p in paths if p != "compiled")
    for (B, outer, lr), path in itertools.product(runs, paths):
        steps = max(1, adaptations // B)
        cfg = dataclasses.replace(base, tasks_per_step=B, outer_steps=steps, outer_lr=lr,
                                  outer_optimizer=outer)
        os.environ["METAPRIOR_CPU_VARIANT"] = compiled if path == "compiled" else "pytorch"
        assert cpu_kernel.variant() == os.environ["METAPRIOR_CPU_VARIANT"]
        c0 = time.process_time()
        if path == "compiled":  # its own threads; torch's tiny ops around it gain nothing
            os.environ["METAPRIOR_CPU_THREADS"] = str(threads)
            torch.set_num_threads(torch_threads)
        else:  # the batched trainer's bmm can use both cores
            torch.set_num_threads(threads)
        prior = meta_train(family, cfg, seed=seed, progress=False, shift_prior=False)
        torch.set_num_threads(1)
        cpu_s = time.process_time() - c0  # includes the family statistics: milliseconds
        seconds = prior.stats["seconds"]  # wall-clock of the outer steps only
        rows.append({"method": f"batched {path} ({threads} thr)", "B": B, "outer": outer,
                     "outer_lr": lr, "outer_steps": steps, "task_adaptations": steps * B,
                     "seed": seed, "seconds": seconds, "cpu_seconds": cpu_s,
                     **few_shot_scores(prior, shots, n_tasks),
                     "variant": os.environ["METAPRIOR_CPU_VARIANT"], "cpu": cpu})
        print(f"  batched {path} ({os.environ['METAPRIOR_CPU_VARIANT']}) B={B} {outer} {lr}: "
              f"{steps * B} adaptations in {seconds:.1f} s", flush=True)
    for k, v in user_setting.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

    df = pd.DataFrame(rows)
    # On a shared machine wall-clock time includes waiting for a core; one thread's CPU time
    # does not, so the ratio is taken from CPU time (both are reported).
    df["adaptations_per_s"] = df.task_adaptations / df.seconds
    df["adaptations_per_cpu_s"] = df.task_adaptations / df.cpu_seconds
    df["speedup"] = df.adaptations_per_cpu_s / df.adaptations_per_cpu_s.iloc[0]
    df["speedup_wall"] = df.adaptations_per_s / df.adaptations_per_s.iloc[0]
    return df


# ---- the inner loop alone ----------------------------------------------------------------
def loop_only(batch_sizes: list[int], dims: list[int], repeats: int = 3, n: int = 100,
              steps: int = 50, batch: int = 10) -> pd.DataFrame:
    """Adaptations per CPU second of `adapt_batched` alone, on every inner loop this CPU runs.

    Random networks (d -> 32 -> 32 -> 32 -> 1) and data, the seed's inner loop (n points, steps
    SGD steps of `batch` points); the best of `repeats` timings of the calling thread's CPU
    time, each loop timed in turn so that load drifts hit all alike.
    """
    loops = ["pytorch", *(v for v in cpu_kernel.supported() if cpu_kernel.load(v) is not None)]
    saved = os.environ.get("METAPRIOR_CPU_VARIANT")
    rows = []
    try:
        for d, B in itertools.product(dims, batch_sizes):
            g = make_generator(0, "loop-only", d, B)
            nets = [init_params(d, (32, 32, 32), g) for _ in range(B)]
            params = [torch.stack(ps) for ps in zip(*nets, strict=True)]
            X, Y = torch.rand(B, n, d, generator=g), torch.randn(B, n, generator=g)
            mask = torch.ones(B, n, dtype=torch.bool)
            keys = order_keys(n_epochs(steps, n, batch), B, n, g)
            best = dict.fromkeys(loops, math.inf)
            for _ in range(repeats):
                for loop in loops:
                    os.environ["METAPRIOR_CPU_VARIANT"] = loop
                    c0 = time.thread_time()
                    adapt_batched(params, X, Y, mask, keys, steps, batch, 0.02, "sgd", 10.0)
                    best[loop] = min(best[loop], time.thread_time() - c0)
            rows += [{"d": d, "B": B, "loop": loop, "adaptations_per_cpu_s": B / best[loop]}
                     for loop in loops]
    finally:
        if saved is None:
            os.environ.pop("METAPRIOR_CPU_VARIANT", None)
        else:
            os.environ["METAPRIOR_CPU_VARIANT"] = saved
    return pd.DataFrame(rows)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds)")
    parser.add_argument("--adaptations", type=int, default=None,
                        help="task adaptations per run (default 1000, 100 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch's threads in the compiled rows, for the small tensor ops "
                             "around the compiled loop (under load 2 threads made them 7x "
                             "slower through OpenMP's barriers)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for the batched trainer: torch's for the PyTorch loop, "
                             "the compiled loop's own for the compiled one (the reference uses 1: "
                             "a tiny nn.Module gains nothing from more); compare wall time")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="tasks per outer step (default 1 10 100 1000; 1 10 100 with --quick)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS),
                        help="inner loops to run the batched trainer with")
    parser.add_argument("--outers", nargs="+", choices=OUTERS, default=list(OUTERS),
                        help="outer optimisers of the batched rows")
    parser.add_argument("--variant", choices=[c for c in cpu_kernel.CHOICES if c != "pytorch"],
                        default="auto",
                        help="the compiled loop's build (default: the widest this CPU runs)")
    parser.add_argument("--loop-only", action="store_true",
                        help="time the inner loop alone (adapt_batched, random networks and "
                             "data) on every variant this CPU runs, at each B and --dims width")
    parser.add_argument("--dims", type=int, nargs="+", default=[1],
                        help="input widths for --loop-only")
    parser.add_argument("--reference", type=Path, default=None,
                        help="an earlier run's CSV (same seed and budget): keep its rows and "
                             "reuse its sequential run instead of rerunning it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.loop_only:
        repeats = 1 if args.quick else 3
        print(f"The inner loop alone (50 SGD steps of 10 of 100 points), adaptations per CPU "
              f"second, best of {repeats}; torch {torch.__version__}, 1 thread; CPU: "
              f"{cpu_description()}", flush=True)
        df = loop_only(args.batch_sizes or [1, 10, 100, 1000], args.dims, repeats=repeats)
        table = df.pivot(index=["d", "B"], columns="loop", values="adaptations_per_cpu_s")
        for loop in table.columns.drop("pytorch"):
            table[f"{loop} / pytorch"] = table[loop] / table["pytorch"]
        print(table.round(1).to_string())
        print(f"CPU: {cpu_description()}")
        if args.out != RESULTS:
            df.assign(cpu=cpu_description()).to_csv(args.out, index=False)
            print(f"Wrote {args.out}")
        return df

    quick = args.quick
    adaptations = args.adaptations or (100 if quick else 1000)
    batch_sizes = args.batch_sizes or ([1, 10, 100] if quick else [1, 10, 100, 1000])
    shots = range(1, 4) if quick else range(1, 11)
    n_tasks = 8 if quick else 32
    print(f"Reptile speed, Logistic, seed's table (50 inner SGD steps, 100 grid points), "
          f"{adaptations} task adaptations per run; torch {torch.__version__}, "
          f"{args.threads} thread(s) for the batched trainer; CPU: {cpu_description()}",
          flush=True)
    reference = None
    if args.reference is not None:
        reference = pd.read_csv(args.reference)
        if "seed" not in reference:  # written before the column existed: trust --seed
            reference["seed"] = args.seed
        for column in ("variant", "cpu"):  # written before these existed: not recorded
            if column not in reference:
                reference[column] = "not recorded"
        seq = reference.iloc[0]
        if (seq["method"] != "sequential (seed)" or int(seq["task_adaptations"]) != adaptations
                or int(seq["seed"]) != args.seed):
            raise SystemExit(f"{args.reference}: its sequential run is not seed {args.seed} "
                             f"with {adaptations} adaptations")
    df = run(adaptations, batch_sizes, extra_lr=1.0, shots=shots, n_tasks=n_tasks,
             seed=args.seed, threads=args.threads, torch_threads=args.torch_threads,
             paths=tuple(args.paths),
             outers=tuple(args.outers), reference=reference, variant=args.variant)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    ks = f"K={min(shots)}..{max(shots)}"
    view = pd.DataFrame({
        "method": df.method, "variant": df.variant.fillna(""), "B": df.B, "outer": df.outer,
        "lr": df.outer_lr,
        "outer steps": df.outer_steps,
        "adaptations": df.task_adaptations, "wall s": df.seconds.round(2),
        "cpu s": df.cpu_seconds.round(2), "adapt/wall s": df.adaptations_per_s.round(1),
        "adapt/cpu s": df.adaptations_per_cpu_s.round(1), "x seq (cpu)": df.speedup.round(1),
        "x seq (wall)": df.speedup_wall.round(1),
        f"MSE meta ({ks})": df.mse_meta_adapted.round(4),
        "MSE meta unadapted": df.mse_meta_unadapted.round(4),
        "MSE random init": df.mse_random_adapted.round(4),
    })
    print(f"\nCPU: {cpu_description()}")
    print(view.to_string(index=False))
    print(f"\nMSE: held-out query MSE / family output variance, mean over {ks}, "
          f"{n_tasks} tasks, {ReptileConfig.seed().adapt_steps} adaptation steps.")
    few = sorted(set(df.B[(df.outer_steps < 100) & (df.B > 1)]))
    if few:
        # Measured: B=1000 matches the reference's MSE from about 100 outer steps on (100,000
        # adaptations), not with 1 or 10 (benchmarks/results/reptile_speed_100k*.csv).
        print(f"B in {few} made fewer than 100 outer steps here: compare their MSE with the "
              f"reference at a budget of at least 100 x B adaptations (--adaptations).")
    print(f"CPU: {cpu_description()}\nWrote {args.out}")
    return df


if __name__ == "__main__":
    main()
