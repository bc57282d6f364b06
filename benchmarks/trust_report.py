"""Help and harm of the default model against uninformed BO, from benchmark CSVs.

Usage:
    python -m benchmarks.trust_report benchmarks/results/help.csv benchmarks/results/harm.csv

Prints, per family and pooled over each block:
- harm: the default's (`metaprior`) median regret over uninformed BO's (`bo`) at 20 and 50
  evaluations (targets 1.5x and 1.2x; the goal is 1.2x at both);
- help: at 5 and 10 evaluations, the default's median over the best single mode's (target
  1.5x); evaluations to reach uninformed BO's final median (target 10 on 7 of 8 families); at
  the final evaluation, the default against uninformed BO (target: no worse);
- `prior_trust` after 10 evaluations (median per block);
- the commits the rows come from (rows of several commits are listed, never silently mixed).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from benchmarks.provenance import read_rows
from metaprior.optim import MODES as OPTIMIZER_MODES

DEFAULT, REFERENCE = "metaprior", "bo"
FIXED_MODES = tuple(m for m in OPTIMIZER_MODES if m != "trusted")


def medians(df: pd.DataFrame, iteration: int) -> pd.DataFrame:
    """Median regret per family and method at `iteration` (families x methods)."""
    at = df[df.iteration == iteration]
    return at.groupby(["family", "method"]).regret.median().unstack("method")


def ratio(a: float, b: float) -> float:
    """a / b, with 0 / 0 = 1 (both reached the optimum)."""
    if b == 0:
        return 1.0 if a == 0 else np.inf
    return a / b


def harm_table(df: pd.DataFrame, checkpoints=(20, 50)) -> pd.DataFrame:
    rows = []
    for it in [c for c in checkpoints if c <= df.iteration.max()]:
        med = medians(df, it)
        pooled = df[df.iteration == it].groupby("method").regret.median()
        for family, r in [*med.iterrows(), ("all", pooled)]:
            rows.append({"family": family, "iteration": it, "bo": r[REFERENCE],
                         "metaprior": r[DEFAULT], "ratio": ratio(r[DEFAULT], r[REFERENCE])})
    return pd.DataFrame(rows)


def evaluations_to_reach(df: pd.DataFrame, method: str, target: float) -> int | None:
    med = df[df.method == method].groupby("iteration").regret.median()
    hit = med.index[(med <= target).to_numpy()]
    return int(hit[0]) if len(hit) else None


def is_single_mode(method: str) -> bool:
    """A fixed degree of trust, `metaprior-<mode>` (with or without "-tr"), not an ablation of
    the default such as "metaprior-two-gp"."""
    mode = method.removeprefix("metaprior-").removesuffix("-tr")
    return method.startswith("metaprior-") and mode in FIXED_MODES


def help_table(df: pd.DataFrame) -> pd.DataFrame:
    final = int(df.iteration.max())
    modes = [m for m in df.method.unique() if is_single_mode(m)]
    rows = []
    for family, g in df.groupby("family", sort=False):
        row = {"family": family}
        for it in (5, 10):
            med = g[g.iteration == it].groupby("method").regret.median()
            best = med.reindex(modes).min() if modes else np.nan
            row[f"default@{it}"] = med.get(DEFAULT, np.nan)
            row[f"best mode@{it}"] = best
            row[f"ratio@{it}"] = ratio(med.get(DEFAULT, np.nan), best)
        target = g[(g.method == REFERENCE) & (g.iteration == final)].regret.median()
        row[f"evals to bo@{final}"] = evaluations_to_reach(g, DEFAULT, target)
        fin = g[g.iteration == final].groupby("method").regret.median()
        row[f"default@{final}"] = fin.get(DEFAULT, np.nan)
        row[f"bo@{final}"] = fin.get(REFERENCE, np.nan)
        rows.append(row)
    return pd.DataFrame(rows).set_index("family")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csvs", nargs="+")
    args = p.parse_args(argv)
    df = pd.concat([read_rows(c) for c in args.csvs], ignore_index=True)
    if "block" not in df:
        df["block"] = "help"
    df["block"] = df["block"].fillna("help")
    fmt = {"float_format": lambda v: f"{v:.3g}"}
    for block, g in df.groupby("block"):
        commits = g.groupby("method")["commit"].unique() if "commit" in g else None
        print(f"\n## block {block}: {g[['family', 'task', 'seed']].drop_duplicates().shape[0]} "
              f"runs per method")
        if commits is not None:
            print("commits: " + "; ".join(f"{m}: {', '.join(map(str, c))}"
                                         for m, c in commits.items()))
        if block == "harm":
            print(harm_table(g).to_string(index=False, **fmt))
        else:
            print(help_table(g).to_string(**fmt))
        if "prior_trust" in g:
            trust = g[(g.iteration == 10) & (g.method == DEFAULT)].prior_trust
            print(f"prior_trust after 10 evaluations: median {trust.median():.3g} "
                  f"[{trust.quantile(0.25):.2g}, {trust.quantile(0.75):.2g}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
