"""Calibration of the predictive distribution on held-out tasks: interval coverage and NLL.

For each family, held-out task and n in {1, 5, 10}: fit the model on n uniformly random points,
then score its predictive distribution (observation noise included) on 256 other random points:
the share inside the central 50% and 90% intervals, and the mean negative log likelihood in
units of the task's output spread (so families compare). The default model (`metaprior`,
`TrustedPriorModel`), a fixed mode and uninformed BO's GP (`bo`) are scored side by side.

Usage:
    python -m benchmarks.calibration --families branin,forrester --tasks 8 \\
        --out benchmarks/results/calibration.csv
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize

from benchmarks.context import build_context, held_out, load_context
from metaprior.gp.evidence import fit_gp
from metaprior.gp.model import MetaPriorModel
from metaprior.gp.trusted import TrustedPriorModel
from metaprior.space import box_from_unit
from metaprior.tasks.family import make_generator

SIZES = (1, 5, 10)
N_TEST = 256
Z50, Z90 = 0.6744897501960817, 1.6448536269514722  # standard normal quantiles 0.75 and 0.95
MODELS = ("metaprior", "metaprior-mean", "bo")


def build(name: str, X, Y, prior, bounds, seed: int):
    """The fitted model `name` on `(X, Y)`."""
    if name == "metaprior":
        return TrustedPriorModel(X, Y, prior, bounds=bounds, seed=seed)
    if name == "bo":
        model = SingleTaskGP(X, Y, input_transform=Normalize(d=X.shape[-1], bounds=bounds))
    else:
        model = MetaPriorModel(X, Y, prior, mode=name.split("-", 1)[1], seed=seed)
    fit_gp(model)
    return model


def score(model, X, y, spread: float) -> dict:
    """Coverage of the 50% and 90% intervals and mean NLL (in units of `spread`) at `X`."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = model.posterior(X, observation_noise=True)
        mean, sd = post.mean[..., 0], post.variance[..., 0].clamp(min=1e-12).sqrt()
    z = ((y - mean) / sd).abs()
    nll = 0.5 * math.log(2 * math.pi) + torch.log(sd / spread) + 0.5 * z.square()
    return {"cover50": float((z <= Z50).double().mean()),
            "cover90": float((z <= Z90).double().mean()), "nll": float(nll.mean())}


def calibration_points(ctx, family_name: str, n_tasks: int):
    """Per held-out task: `(index, task, X_all, y_all)`, `max(SIZES) + N_TEST` uniformly random
    points (`m x d`) and their values (`m`); the first `max(SIZES)` are the training points,
    the rest the test points."""
    bounds = ctx.family.bounds
    for ti, task in enumerate(held_out(ctx.family, n_tasks)):
        g = make_generator(0, "calibration", family_name, ti)
        U = torch.rand(max(SIZES) + N_TEST, bounds.shape[-1], generator=g, dtype=torch.float64)
        X_all = box_from_unit(U, bounds)
        yield ti, task, X_all, task(X_all).reshape(-1)


class Fitted(NamedTuple):
    """One model fitted on a held-out task's first `n` calibration points, and that task's
    test points (`N_TEST x d`, `N_TEST`)."""

    task_index: int
    task: object
    n: int
    model_name: str
    model: object
    X_test: torch.Tensor
    y_test: torch.Tensor


def fitted_models(family_name: str, n_tasks: int, cache: str, yahpo_dir: str | None,
                  models: list[str], sizes=SIZES):
    """`Fitted` for each held-out task, size in `sizes` and model in `models`, in that order."""
    ctx = load_context(family_name, cache, yahpo_dir)
    for ti, task, X_all, y_all in calibration_points(ctx, family_name, n_tasks):
        X_test, y_test = X_all[max(SIZES):], y_all[max(SIZES):]
        for n in sizes:
            for name in models:
                model = build(name, X_all[:n], y_all[:n].unsqueeze(-1), ctx.prior,
                              ctx.family.bounds, seed=ti)
                yield Fitted(ti, task, n, name, model, X_test, y_test)


def run_family(family_name: str, n_tasks: int, cache: str, yahpo_dir: str | None,
               models: list[str]) -> list[dict]:
    rows = []
    for fit in fitted_models(family_name, n_tasks, cache, yahpo_dir, models):
        row = {"family": family_name, "task": fit.task.name, "n": fit.n, "model": fit.model_name,
               "prior_trust": getattr(fit.model, "prior_trust", float("nan"))}
        row.update(score(fit.model, fit.X_test, fit.y_test, float(fit.y_test.std()) or 1.0))
        rows.append(row)
    return rows


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Median over tasks of coverage and NLL, per family, model and n."""
    return df.groupby(["family", "model", "n"])[["cover50", "cover90", "nll"]].median()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.calibration",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="branin,forrester")
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--cache", default="benchmarks/results/cache")
    p.add_argument("--yahpo-data", default=None)
    p.add_argument("--out", default="benchmarks/results/calibration.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for fam in args.families.split(","):
        build_context(fam, args.cache, ["metaprior"], args.yahpo_data, progress=False)
        rows += run_family(fam, args.tasks, args.cache, args.yahpo_data, args.models.split(","))
    df = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(summary(df).to_string(float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
