"""Tables and plots from a benchmark CSV (see `benchmarks/run.py`).

Usage:
    python -m benchmarks.report benchmarks/results/standard.csv --out benchmarks/results

Per family: the median normalised regret [interquartile range] at 1, 5, 10, 20 and 30
evaluations, the average rank of each method at those points, and how many evaluations each
metaprior mode needs to reach uninformed BO's final median regret. One PNG of regret curves
(median and IQR band) per family.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.provenance import read_rows

CHECKPOINTS = (1, 5, 10, 20, 30)
REFERENCE = "bo"


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table (pandas' own needs the optional `tabulate`)."""
    header = [str(table.index.name or ""), *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx), *map(str, row.tolist())]) + " |")
    return "\n".join(lines)


def regret_at(df: pd.DataFrame, checkpoints=CHECKPOINTS) -> pd.DataFrame:
    """Rows (family, task, seed, method, iteration) at the checkpoints that exist."""
    its = [c for c in checkpoints if c <= df.iteration.max()]
    return df[df.iteration.isin(its)]


def summary_table(df: pd.DataFrame, checkpoints=CHECKPOINTS) -> pd.DataFrame:
    """Median [q25, q75] regret and average rank per method and checkpoint, for one family."""
    at = regret_at(df, checkpoints)
    ranks = at.assign(rank=at.groupby(["task", "seed", "iteration"]).regret.rank(method="average"))
    rows = []
    for method, g in ranks.groupby("method", sort=False):
        row = {"method": method}
        for it, h in g.groupby("iteration"):
            q = h.regret.quantile([0.25, 0.5, 0.75]).to_numpy()
            row[f"regret@{it}"] = f"{q[1]:.3g} [{q[0]:.2g}, {q[2]:.2g}]"
            row[f"rank@{it}"] = round(float(h["rank"].mean()), 2)
        row["runs"] = g[["task", "seed"]].drop_duplicates().shape[0]
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def evaluations_to_match(df: pd.DataFrame, reference: str = REFERENCE) -> dict[str, int | None]:
    """Per method: the first iteration whose median regret <= the reference's final median."""
    med = df.groupby(["method", "iteration"]).regret.median().unstack(0)
    if reference not in med:
        return {}
    target = med[reference].iloc[-1]
    out = {}
    for method in med.columns:
        hit = med.index[(med[method] <= target).to_numpy()]
        out[method] = int(hit[0]) if len(hit) else None
    return out


def plot_family(df: pd.DataFrame, family: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    floor = 1e-5  # log scale: a regret of exactly 0 is drawn at the floor
    for method, g in df.groupby("method", sort=False):
        q = g.groupby("iteration").regret.quantile([0.25, 0.5, 0.75]).unstack().clip(lower=floor)
        style = "-" if method.startswith("metaprior") else "--"
        ax.plot(q.index, q[0.5], style, label=method)
        ax.fill_between(q.index, q[0.25], q[0.75], alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("normalised regret (median, IQR)")
    ax.set_title(family)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_report(df: pd.DataFrame, checkpoints=CHECKPOINTS) -> str:
    parts = []
    for family, g in df.groupby("family", sort=False):
        table = summary_table(g, checkpoints)
        regret_cols = [c for c in table.columns if c.startswith("regret@")]
        rank_cols = [c for c in table.columns if c.startswith("rank@")]
        parts.append(f"### {family}\n")
        parts.append(to_markdown(table[[*regret_cols, "runs"]]) + "\n")
        parts.append("Average rank (1 = best):\n")
        parts.append(to_markdown(table[rank_cols]) + "\n")
        match = evaluations_to_match(g)
        if match:
            final = g.iteration.max()
            text = ", ".join(f"{m}: {'>' + str(final) if v is None else v}"
                             for m, v in match.items() if m != REFERENCE)
            parts.append(f"Evaluations to reach uninformed BO's {final}-evaluation median "
                         f"regret: {text}\n")
    return "\n".join(parts)


def overall_ranks(df: pd.DataFrame, checkpoints=(5, 10)) -> pd.DataFrame:
    """Average rank per method at `checkpoints`, averaged over families."""
    at = regret_at(df, checkpoints)
    at = at.assign(rank=at.groupby(["family", "task", "seed", "iteration"]).regret.rank())
    per_family = at.groupby(["family", "iteration", "method"])["rank"].mean()
    return per_family.groupby(["iteration", "method"]).mean().unstack(0).round(2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv")
    p.add_argument("--out", default=None, help="folder for report.md and PNGs (default: CSV's)")
    args = p.parse_args(argv)
    df = read_rows(args.csv)
    out = Path(args.out) if args.out else Path(args.csv).parent
    out.mkdir(parents=True, exist_ok=True)
    text = markdown_report(df)
    if df.family.nunique() > 1:
        text += "\n### Average rank over families\n\n" + to_markdown(overall_ranks(df)) + "\n"
    stem = Path(args.csv).stem
    (out / f"{stem}_report.md").write_text(text)
    for family, g in df.groupby("family", sort=False):
        plot_family(g, family, out / f"{stem}_{family}.png")
    print(text)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
