"""Write notebooks/quickstart.ipynb (without outputs) from the cells below.

    python notebooks/make_quickstart.py             # writes the notebook next to this file
    python notebooks/make_quickstart.py --execute   # and runs it in place (full budget)

Editing the cells here, not in the .ipynb, keeps the notebook's diff readable.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

CELLS = [
    ("md", """# metaprior quickstart

Meta-learn a neural-network prior from many related optimisation problems, then use it to
optimise a *new* one with Bayesian optimisation (BO) in fewer evaluations.

1. a built-in task family, meta-training, saving and loading a prior;
2. your own family from a table of past runs (`TableFamily`);
3. BO with the prior against uninformed BO on held-out tasks, with regret curves.

Set `METAPRIOR_QUICK=1` in the environment to run everything with tiny budgets (the test suite
does)."""),
    ("code", """import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
QUICK = os.environ.get("METAPRIOR_QUICK", "") not in ("", "0")

import tempfile
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import metaprior as mp

torch.set_num_threads(1)
STEPS = 40 if QUICK else 1000        # outer (meta) steps
BUDGET = 5 if QUICK else 12          # evaluations per BO run
N_TASKS = 2 if QUICK else 6          # held-out tasks
print(f"quick={QUICK}: {STEPS} meta-steps, {BUDGET} evaluations x {N_TASKS} held-out tasks")"""),
    ("md", """## 1. A built-in family

`Forrester()` is a family of 1-D minimisation problems: the Forrester function, randomly
translated and scaled. Each draw is one task."""),
    ("code", """family = mp.tasks.Forrester()
batch = family.sample(6, 200, mp.tasks.family.make_generator(0, "show"), grid=True)
fig, ax = plt.subplots(figsize=(6, 3))
for x, y in zip(batch.X, batch.Y):
    ax.plot(x[:, 0], y, lw=1)
ax.set(xlabel="x", ylabel="y", title=f"six tasks of {family.name}")
plt.show()
print(family, "bounds:", family.bounds.tolist())"""),
    ("md", """### Meta-training

Batched Reptile adapts a small MLP to many tasks at once and moves its initialisation towards
the adapted weights. `ReptileConfig` holds every knob; `dataclasses.replace` changes one."""),
    ("code", """config = mp.ReptileConfig(outer_steps=STEPS)
prior = mp.meta_train(family, config, seed=0, progress=False)
print(prior)
print({k: v for k, v in prior.stats.items() if k != "loss_history"})"""),
    ("md", """### Save and load

A prior file is safetensors plus a JSON header: no pickle, written atomically.
`metaprior info PATH` prints the same header from the command line."""),
    ("code", """path = os.path.join(tempfile.mkdtemp(), "forrester.prior")
prior.save(path)
loaded = mp.MetaPrior.load(path)
X = torch.linspace(0, 1, 5, dtype=torch.float64).unsqueeze(-1)
assert torch.allclose(loaded.predict(X), prior.predict(X))
print(f"{path}: {os.path.getsize(path)} bytes;", loaded)"""),
    ("md", """### Few-shot check

On held-out tasks, the meta-learned initialisation adapted to K points should beat a random
initialisation adapted the same way (mean squared error on other points of the task, in units
of the family's output variance)."""),
    ("code", """few_shot = mp.evaluate_few_shot(prior, family, shots=[1, 2, 5], n_tasks=16, seed=1)
few_shot.pivot(index="shots", columns="method", values="mse").round(3)"""),
    ("md", """## 2. Your own family from past runs

Most real priors come from logs: one row per evaluation, a column naming the run (task), the
inputs and the output. Here we fake such a log by sampling 60 Forrester tasks, then build a
`TableFamily` from the DataFrame exactly as you would from your own CSV
(`pd.read_csv(...)`). Some tasks are held out of meta-training by a documented hash rule."""),
    ("code", """n_runs, n_points = (16, 12) if QUICK else (60, 25)
past = family.sample(n_runs, n_points, mp.tasks.family.make_generator(0, "history"))
runs = pd.DataFrame({
    "run": np.repeat([f"run{i:02d}" for i in range(n_runs)], n_points),
    "x": past.X[..., 0].reshape(-1).numpy(),
    "loss": past.Y.reshape(-1).numpy(),
})
print(runs.head())
table = mp.tasks.TableFamily.from_dataframe(runs, task="run", inputs=["x"], output="loss",
                                            bounds=family.bounds, name="my-runs")
print(table, f"{table.n_train_tasks()} training runs")
table_config = mp.ReptileConfig(outer_steps=STEPS, tasks_per_step=min(16, table.n_train_tasks()),
                                points_per_task=n_points)
table_prior = mp.meta_train(table, table_config, seed=0, progress=False)
table_prior"""),
    ("md", """## 3. BO with and without the prior

`mp.minimize(fn, bounds, budget, prior=...)` minimises a black box. With a prior its first
point is the prior's zero-shot minimiser, and later points maximise qLogNEI under
`MetaPriorModel`, a BoTorch `SingleTaskGP` whose mean is the network adapted to the
observations. `prior=None` is plain BO (Sobol design, then `SingleTaskGP` + qLogNEI).

The tasks below are held out: meta-training never saw them. Normalised regret is
(best so far - task minimum) / (task maximum - task minimum)."""),
    ("code", """# GPs on a few nearly collinear points add jitter to their Cholesky factor; that is fine.
warnings.filterwarnings("ignore", message="A not p.d., added jitter")
tasks = family.held_out_tasks(N_TASKS, seed=123)
methods = {"uninformed BO": None, "metaprior (built-in family)": prior,
           "metaprior (from past runs)": table_prior}
curves = {name: [] for name in methods}
for task in tasks:
    for name, p in methods.items():
        res = mp.minimize(task, task.bounds, budget=BUDGET, prior=p, seed=0)
        regret = (res.history["best"].to_numpy() - task.y_min) / (task.y_max - task.y_min)
        curves[name].append(np.maximum(regret, 1e-6))
res.history.head()"""),
    ("code", """fig, ax = plt.subplots(figsize=(6, 4))
steps = np.arange(1, BUDGET + 1)
for name, runs_ in curves.items():
    r = np.stack(runs_)
    med = np.median(r, axis=0)
    lo, hi = np.percentile(r, [25, 75], axis=0)
    ax.plot(steps, med, marker="o", ms=3, label=name)
    ax.fill_between(steps, lo, hi, alpha=0.2)
ax.set(yscale="log", xlabel="evaluations", ylabel="normalised regret",
       title=f"{len(tasks)} held-out {family.name} tasks (median, IQR)")
ax.legend()
plt.show()
summary = pd.DataFrame({name: np.median(np.stack(r), axis=0) for name, r in curves.items()},
                       index=pd.Index(steps, name="evaluations"))
print("median normalised regret")
print(summary.iloc[[0, min(4, BUDGET - 1), BUDGET - 1]].to_string(float_format="%.4f"))"""),
    ("md", """## Where next

- The command line: `metaprior train branin --out branin.prior`, `metaprior info`,
  `metaprior eval`, `metaprior list` (see `docs/cli.md`).
- Ask/tell: `opt = mp.Optimizer(bounds, prior=prior)`, then `opt.ask()` / `opt.tell(X, y)`.
- BoTorch: `mp.MetaPriorModel(train_X, train_Y, prior=prior, mode="mean" | "kernel" | "both")`
  with any acquisition function.
- Ax: `client.set_generation_strategy(metaprior.ax.generation_strategy(prior))`."""),
]


def build() -> nbformat.NotebookNode:
    cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
             for kind, src in CELLS]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(HERE / "quickstart.ipynb"))
    ap.add_argument("--execute", action="store_true", help="run it (full budget) and keep outputs")
    args = ap.parse_args()
    nb = build()
    if args.execute:
        from nbclient import NotebookClient

        os.environ.pop("METAPRIOR_QUICK", None)
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
