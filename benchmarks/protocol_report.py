"""The report of the standard protocol: every benchmark number of the README, from the CSVs.

Usage:
    python -m benchmarks.protocol_report benchmarks/results/v3 [--readme README.md] [--check]
    python -m benchmarks.protocol_report benchmarks/results/v2 --protocol v2 [...]

Reads `help.csv`, `harm.csv` and `calibration.csv` of one protocol run, refuses rows of commits
whose code differs (unless `--allow-mixed`; commits that differ only in the README and the
results are one code version), and writes `<dir>/report.md`, one PNG of regret curves per
family, and the same tables into the README between the markers below. Nothing is copied by
hand: regenerate, and `git diff` is empty. `--check` writes nothing and fails when the README's
section differs from what the CSVs give.

Tables: the default against uninformed BO per family (median regret, evaluations to reach BO's
30-evaluation median with a bootstrap interval, paired signed-rank tests); every method's median
and mean log10 regret at 5, 10 and 30 evaluations; the default against the best single mode;
harm ratios and `prior_trust`; interval coverage and NLL.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import stats
from benchmarks.protocol import CALIBRATION_MODELS, PROTOCOLS, Protocol
from benchmarks.provenance import NOT_CODE, code_versions, read_rows
from benchmarks.report import plot_family, to_markdown
from benchmarks.run import RUN_KEY
from benchmarks.trust_report import harm_table, help_table, is_single_mode

BEGIN, END = "<!-- benchmark-tables:begin -->", "<!-- benchmark-tables:end -->"
DEFAULT, REFERENCE = "metaprior", "bo"
CHECKPOINTS = (5, 10, 30)


class ReportError(SystemExit):
    """The CSVs cannot make one report (mixed commits, no rows, no README markers)."""


def number(v: float, inf: str = "inf") -> str:
    """Two significant digits; 0 as "0", NaN as "-", infinity as `inf`."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return inf
    return "0" if v == 0 else f"{v:.2g}"


def evaluations(v: float) -> str:
    """An evaluation count; infinity means the target was never reached."""
    return number(v, inf="never")


def load(folder: Path) -> dict[str, pd.DataFrame]:
    """The protocol's frames that exist: "help", "harm", "calibration"."""
    frames = {}
    for name in ("help", "harm", "calibration"):
        path = folder / f"{name}.csv"
        if path.exists() and path.stat().st_size:
            df = read_rows(path)
            if len(df):  # an interrupted start can leave a header only
                frames[name] = df
    if not frames:
        raise ReportError(f"metaprior report: error: no help.csv, harm.csv or calibration.csv "
                          f"in {folder}")
    return frames


def provenance_lines(frames: dict[str, pd.DataFrame], allow_mixed: bool) -> list[str]:
    """The commits, code versions, library versions and machines of the rows; refuses rows of
    different code (`code_versions`) unless `allow_mixed`."""
    columns = ["commit", "code", "versions", "machine"]
    rows = pd.concat([f[[c for c in columns if c in f]] for f in frames.values()])
    commits = sorted(rows["commit"].astype(str).unique())
    versions = code_versions(rows)
    if len(versions) > 1 and not allow_mixed:
        raise ReportError(f"metaprior report: error: the rows come from several commits with "
                          f"different code {list(versions.values())}; rerun on one commit or "
                          f"pass --allow-mixed")
    if len(commits) == 1:
        lines = [f"- Commit: `{commits[0]}`"]
    else:  # which rows each commit made
        lines = ["- Commits:"]
        for c in commits:
            parts = [f"{name}: {', '.join(sorted(f[f['commit'].astype(str) == c].method.unique()))}"
                     if "method" in f else name
                     for name, f in frames.items() if (f["commit"].astype(str) == c).any()]
            lines.append(f"  - `{c}`: {'; '.join(parts)}")
        outside = " and ".join(NOT_CODE)
        if len(versions) == 1:
            lines.append(f"- One code version (`{next(iter(versions))}`): the commits differ "
                         f"only in {outside}")
        else:
            lines.append(f"- {len(versions)} code versions (commits of one version differ "
                         f"only in {outside}):")
            lines += [f"  - `{code}`: " + ", ".join(f"`{c}`" for c in group)
                      for code, group in versions.items()]
    lines += [f"- Versions: {v}" for v in sorted(rows["versions"].unique())]
    lines += [f"- Machine: {m}" for m in sorted(rows["machine"].unique())]
    return lines


def completeness(frames: dict[str, pd.DataFrame], protocol: Protocol) -> tuple[list[str], bool]:
    """One line per part: runs done of the protocol's; and whether everything is done."""
    lines, complete = [], True
    for block in protocol.blocks:
        expected = len(protocol.families) * block.tasks * block.seeds * len(block.methods)
        df = frames.get(block.name)
        done = 0
        if df is not None:
            sizes = df.groupby(["family", "task", "seed", "method"]).iteration.max()
            done = int((sizes >= block.budget).sum())
        complete &= done >= expected
        lines.append(f"- {block.name}: {done} of {expected} runs ({len(protocol.families)} "
                     f"families x {block.tasks} tasks x {block.seeds} seeds x "
                     f"{len(block.methods)} methods, budget {block.budget})")
    cal = frames.get("calibration")
    fams = 0 if cal is None else cal.family.nunique()
    complete &= fams >= len(protocol.families)
    lines.append(f"- calibration: {fams} of {len(protocol.families)} families")
    return lines, complete


def finished(df: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Only the runs that reached the block's `budget`, each once (`benchmarks.run` appends
    a run whole, but a file cut by a crash may hold part of one)."""
    df = df.drop_duplicates(subset=[*RUN_KEY, "iteration"])
    size = df.groupby(RUN_KEY).iteration.transform("nunique")
    return df[size >= budget]


def paired(g: pd.DataFrame, methods: tuple[str, ...]) -> pd.DataFrame:
    """The rows of `methods` on the runs (task, seed) that all of them finished."""
    g = g[g.method.isin(methods)]
    n_methods = g.groupby(["task", "seed"]).method.transform("nunique")
    return g[n_methods == len(methods)]


def default_vs_bo(help_df: pd.DataFrame) -> pd.DataFrame:
    """Per family: medians, evaluations to reach BO's final median, and signed-rank tests."""
    final = int(help_df.iteration.max())
    checkpoints = [c for c in CHECKPOINTS if c <= final]
    rows = []
    for family, g in help_df.groupby("family", sort=False):
        # every figure of a row from the same runs, so that its columns agree
        g = paired(g, (DEFAULT, REFERENCE))
        if g.empty:
            continue
        row = {"family": family,
               "runs": g[g.method == DEFAULT][["task", "seed"]].drop_duplicates().shape[0]}
        row[f"bo@{final}"] = number(g[(g.method == REFERENCE) & (g.iteration == final)]
                                    .regret.median())
        for it in checkpoints:
            row[f"default@{it}"] = number(g[(g.method == DEFAULT) & (g.iteration == it)]
                                          .regret.median())
        est, lo, hi = stats.evaluations_to_match(g, DEFAULT, REFERENCE, final)
        row[f"evals to bo@{final} [90% CI]"] = (f"{evaluations(est)} [{evaluations(lo)}, "
                                                 f"{evaluations(hi)}]")
        for it in checkpoints:
            t = stats.signed_rank(g, DEFAULT, REFERENCE, it)
            row[f"W/L/T, p @{it}"] = f"{t['wins']}/{t['losses']}/{t['ties']}, {number(t['p'])}"
        rows.append(row)
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["family"])
    return table.set_index("family")


def spread(regret: pd.Series) -> str:
    """"median [q25, q75]; mean log10" of a method's regrets."""
    q = regret.quantile([0.25, 0.5, 0.75]).to_numpy()
    return (f"{number(q[1])} [{number(q[0])}, {number(q[2])}]; "
            f"{stats.mean_log10(regret):.1f}")


def every_method(help_df: pd.DataFrame, iteration: int,
                 methods: tuple[str, ...]) -> pd.DataFrame:
    """Per family (rows) and method (columns, in `methods`' order, those with runs): the
    `spread` of regret at `iteration`."""
    at = help_df[help_df.iteration == iteration]
    cells = at.groupby(["family", "method"], sort=False).regret.agg(spread)
    present = [m for m in methods if m in set(at.method)]
    return cells.unstack("method").reindex(columns=present).fillna("-")


def versus_modes(help_df: pd.DataFrame) -> pd.DataFrame:
    """The default over the best single mode at 5 and 10 evaluations (issue 12's bar: 1.5x)."""
    table = help_table(help_df)
    keep = [c for c in table.columns if c.startswith(("best mode@", "ratio@"))]
    return table[keep].map(number)


def harm_summary(harm_df: pd.DataFrame) -> pd.DataFrame:
    """Per family and pooled: median regret of bo and the default and their ratio, at 20 and
    50 evaluations, and the default's `prior_trust` after 10."""
    final = int(harm_df.iteration.max())
    table = harm_table(harm_df, [c for c in (20, 50) if c <= final] or [final])
    wide = table.pivot(index="family", columns="iteration", values=["bo", "metaprior", "ratio"])
    out = pd.DataFrame(index=wide.index)
    for it in sorted(table.iteration.unique()):
        out[f"bo@{it}"] = wide[("bo", it)].map(number)
        out[f"default@{it}"] = wide[("metaprior", it)].map(number)
        out[f"ratio@{it}"] = wide[("ratio", it)].map(number)
    trust = harm_df[(harm_df.method == DEFAULT) & (harm_df.iteration == 10)]
    per_family = trust.groupby("family").prior_trust.median()
    out["prior_trust@10"] = [number(per_family.get(f, trust.prior_trust.median()))
                             for f in out.index]
    order = [f for f in harm_df.family.unique() if f in out.index] + ["all"]
    return out.loc[[f for f in order if f in out.index]]


def trust_lines(frames: dict[str, pd.DataFrame]) -> list[str]:
    """The default's median `prior_trust` after 10 evaluations, per block."""
    lines = []
    for block in ("help", "harm"):
        df = frames.get(block)
        if df is None:
            continue
        t = df[(df.method == DEFAULT) & (df.iteration == 10)].prior_trust
        if len(t):
            lines.append(f"- {block}: median {number(t.median())} [{number(t.quantile(0.25))}, "
                         f"{number(t.quantile(0.75))}] over {len(t)} runs")
    return lines


def calibration_table(cal: pd.DataFrame) -> pd.DataFrame:
    """Median over held-out tasks of 50%/90% coverage and NLL, default beside uninformed BO."""
    med = cal[cal.model.isin(CALIBRATION_MODELS)].groupby(
        ["family", "n", "model"], sort=False)[["cover50", "cover90", "nll"]].median()
    wide = med.unstack("model")
    out = pd.DataFrame(index=wide.index)
    for metric, label in (("cover50", "50%"), ("cover90", "90%"), ("nll", "NLL")):
        for model, name in ((DEFAULT, "default"), (REFERENCE, "bo")):
            if (metric, model) in wide:
                out[f"{name} {label}"] = wide[(metric, model)].map("{:.2f}".format)
    out.index = [f"{f} n={n}" for f, n in out.index]
    out.index.name = "family, n"
    return out


def command(folder: Path, protocol_name: str = "standard", allow_mixed: bool = False) -> str:
    """The command that writes `folder`'s report (the protocol named unless it is "standard")."""
    named = "" if protocol_name == "standard" else f" --protocol {protocol_name}"
    mixed = " --allow-mixed" if allow_mixed else ""
    return f"python -m benchmarks.protocol_report {folder}{named}{mixed}"


def render(frames: dict[str, pd.DataFrame], protocol: Protocol, folder: Path,
           allow_mixed: bool = False, protocol_name: str = "standard") -> str:
    """The whole report as markdown."""
    parts = [f"Generated by `{command(folder, protocol_name, allow_mixed)}` from the CSVs there; "
             f"do not edit by hand.\n"]
    parts += provenance_lines(frames, allow_mixed)
    done, complete = completeness(frames, protocol)
    parts += ["", "Runs done of the protocol:" if complete else
              "**Partial**: the protocol is not finished; the tables cover the runs done so far "
              "(resume with `make bench` on the same commit).", *done, ""]
    help_df = frames.get("help")
    if help_df is not None:
        help_df = finished(help_df, protocol.block("help").budget)
    if help_df is not None and len(help_df):
        final = int(help_df.iteration.max())
        parts += ["#### Help: the default against uninformed BO on held-out tasks\n",
                  f"Median normalised regret. \"evals to bo@{final}\": evaluations the default "
                  f"needs for its median to reach uninformed BO's {final}-evaluation median, "
                  f"with a 90% bootstrap interval over runs. W/L/T: runs where the default's "
                  f"regret is lower/higher/equal; p: paired Wilcoxon signed-rank test.\n",
                  to_markdown(default_vs_bo(help_df)), ""]
        for it in CHECKPOINTS:
            if it <= final:
                parts += [f"#### Help: every method at {it} evaluations\n",
                          "Median regret [interquartile range]; mean log10 regret (a regret "
                          f"of 0 counts as {stats.REGRET_FLOOR:g}).\n",
                          to_markdown(every_method(help_df, it,
                                                   protocol.block("help").methods)), ""]
        if help_df.method.map(is_single_mode).any():
            parts += ["#### Help: the default against the best single mode\n",
                      to_markdown(versus_modes(help_df)), ""]
    harm_df = frames.get("harm")
    if harm_df is not None:
        harm_df = paired(finished(harm_df, protocol.block("harm").budget), (DEFAULT, REFERENCE))
    if harm_df is not None and len(harm_df):
        parts += ["#### Harm: tasks unlike each family\n",
                  "Median normalised regret of uninformed BO and the default, their ratio, and "
                  "the default's `prior_trust` after 10 evaluations.\n",
                  to_markdown(harm_summary(harm_df)), ""]
    if (lines := trust_lines(frames)):
        parts += ["#### `prior_trust` after 10 evaluations\n", *lines, ""]
    cal = frames.get("calibration")
    if cal is not None:
        parts += ["#### Calibration on held-out tasks\n",
                  "Share of held-out points inside the central 50% and 90% predictive "
                  "intervals (ideal 0.50 and 0.90), and NLL in units of the task's spread; "
                  "median over tasks, after n random observations.\n",
                  to_markdown(calibration_table(cal)), ""]
    return "\n".join(parts).rstrip() + "\n"


def replace_section(text: str, section: str, path: Path) -> str:
    """`text` with everything between the markers replaced by `section`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ReportError(f"metaprior report: error: {path} has no {BEGIN} ... {END} markers")
    return text[:start + len(BEGIN)] + "\n" + section + text[end:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.protocol_report",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="the protocol's output folder (help.csv, harm.csv, ...)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="standard")
    p.add_argument("--readme", default="README.md", help="README to write the tables into")
    p.add_argument("--no-readme", action="store_true")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--allow-mixed", action="store_true", help="rows of several code versions")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the README's section is not what the CSVs give")
    args = p.parse_args(argv)
    np.seterr(all="ignore")
    folder = Path(args.folder)
    frames = load(folder)
    text = render(frames, PROTOCOLS[args.protocol], folder, args.allow_mixed, args.protocol)
    readme = Path(args.readme)
    if args.check:
        current = readme.read_text()
        if replace_section(current, text, readme) != current:
            print(f"{readme}: the benchmark section differs from what {folder} gives; run "
                  f"{command(folder, args.protocol, args.allow_mixed)}", file=sys.stderr)
            return 1
        return 0
    (folder / "report.md").write_text(text)
    if not args.no_readme:
        readme.write_text(replace_section(readme.read_text(), text, readme))
    if not args.no_plots and "help" in frames:
        budget = PROTOCOLS[args.protocol].block("help").budget
        for family, g in finished(frames["help"], budget).groupby("family", sort=False):
            plot_family(g, family, folder / f"help_{family}.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
