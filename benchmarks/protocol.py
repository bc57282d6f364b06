"""The standard benchmark protocol in one command: help, harm and calibration on one commit.

Usage:
    make bench
    python -m benchmarks.protocol --protocol standard --out benchmarks/results/v3 --workers 2

Runs, into `<out>/`:
- `calibration.csv`: interval coverage and NLL of the default model and of uninformed BO's GP on
  held-out tasks after n = 1, 5 and 10 observations (`benchmarks/calibration.py`);
- `help.csv`: every method on each family's held-out tasks (../shared/DESIGN.md, the
  benchmark protocol);
- `harm.csv`: uninformed BO, the default and its two-GP ablation on tasks unlike each family
  (`metaprior.tasks.mismatched_tasks`);
then writes `<out>/report.md` and the README's benchmark section (`benchmarks/protocol_report.py`).

Every row carries its commit, library versions and machine. The command is resumable: finished
runs are skipped, so after an interruption the same command continues. It refuses to append to
files of another commit (resume in a worktree of that commit: `git worktree add DIR COMMIT`) and
to start from a tree with uncommitted changes, unless told to. The uninformed and default runs
go first, so an interrupted run has the comparison that matters most.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from benchmarks import calibration
from benchmarks.context import build_context
from benchmarks.provenance import provenance, read_rows
from benchmarks.run import (
    ALL_FAMILIES,
    check_one_commit,
    completed_runs,
    execute,
    plan_runs,
    repair_results,
    whole_lines,
)
from metaprior.priorfile import atomic_write_bytes


@dataclass(frozen=True)
class Block:
    """One block of BO runs: `methods` x `tasks` x `seeds` per family, `budget` evaluations."""

    name: str  # "help" (held-out tasks of the family) or "harm" (tasks unlike it)
    methods: tuple[str, ...]
    tasks: int
    seeds: int
    budget: int


@dataclass(frozen=True)
class Protocol:
    """The families, blocks and calibration sizes of a benchmark protocol."""

    families: tuple[str, ...]
    blocks: tuple[Block, ...]
    calibration_tasks: int
    quick: bool = False  # tiny meta-training (smoke tests), never for published figures
    # run before every other method
    first: tuple[str, ...] = ("bo", "metaprior", "metaprior-two-gp")

    def block(self, name: str) -> Block:
        return next(b for b in self.blocks if b.name == name)


# "metaprior-both" is left out: in the v1 tables (standard.csv) its median regret was never more
# than 1.2x below "metaprior-mean"'s, on any family at 5, 10 or 30 evaluations (and up to 1.5x
# above it at 30), at twice the time per step.
HELP_METHODS = ("bo", "metaprior", "metaprior-two-gp", "random", "portfolio", "metaprior-mean",
                "metaprior-kernel", "metaprior-shift", "rgpe", "fsbo")
PROTOCOLS = {
    "standard": Protocol(
        families=ALL_FAMILIES,
        blocks=(Block("help", HELP_METHODS, tasks=8, seeds=2, budget=30),
                # three tasks per family: one of each kind of mismatch
                Block("harm", ("bo", "metaprior", "metaprior-two-gp"), tasks=3, seeds=2,
                      budget=50)),
        calibration_tasks=8),
    # What benchmark v2 (benchmarks/results/v2, 8e6968e) ran: the standard protocol before the
    # default took the shift ensemble, when "metaprior" was today's "metaprior-two-gp".
    "v2": Protocol(
        families=ALL_FAMILIES,
        blocks=(Block("help", ("bo", "metaprior", "random", "portfolio", "metaprior-mean",
                               "metaprior-kernel", "metaprior-shift", "rgpe", "fsbo"),
                      tasks=8, seeds=2, budget=30),
                Block("harm", ("bo", "metaprior"), tasks=3, seeds=2, budget=50)),
        calibration_tasks=8),
    # A few minutes on 2 cores: checks that the whole pipeline runs (used by the tests).
    "smoke": Protocol(
        families=("forrester", "branin"),
        blocks=(Block("help", ("bo", "metaprior", "random", "portfolio", "rgpe"), tasks=1,
                      seeds=2, budget=4),
                Block("harm", ("bo", "metaprior"), tasks=1, seeds=1, budget=4)),
        calibration_tasks=1, quick=True),
}
CALIBRATION_MODELS = ("metaprior", "bo")


def calibration_rows(protocol: Protocol) -> int:
    """Rows of one family's calibration: tasks x observation counts x models."""
    return protocol.calibration_tasks * len(calibration.SIZES) * len(CALIBRATION_MODELS)


def read_calibration(path: Path, protocol: Protocol) -> pd.DataFrame | None:
    """The calibration rows of the families that are complete; a family cut off by an
    interruption is dropped from the file (atomically) to be redone whole."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    data = path.read_bytes()
    df = read_rows(io.BytesIO(whole_lines(data)))
    complete = df.groupby("family").family.transform("size") >= calibration_rows(protocol)
    if not complete.all() or not data.endswith(b"\n"):
        atomic_write_bytes(path, df[complete].to_csv(index=False).encode())
        df = df[complete]
    return df if len(df) else None


def run_calibration(protocol: Protocol, path: Path, cache: str, yahpo_dir: str | None,
                    origin: dict[str, str]) -> None:
    """Append the calibration rows of each family not yet complete in `path`."""
    existing = read_calibration(path, protocol)
    done = set() if existing is None else set(existing.family)
    for family in protocol.families:
        if family in done:
            continue
        rows = calibration.run_family(family, protocol.calibration_tasks, cache, yahpo_dir,
                                      list(CALIBRATION_MODELS))
        frame = pd.DataFrame([{**row, **origin} for row in rows])
        if existing is not None and list(existing.columns) != list(frame.columns):
            raise SystemExit(f"metaprior bench: error: {path} has columns "
                             f"{list(existing.columns)}, expected {list(frame.columns)}; "
                             f"write to a new folder")
        frame.to_csv(path, mode="a", header=not (path.exists() and path.stat().st_size),
                     index=False)


def run_protocol(protocol: Protocol, out: Path, cache: str | None = None,
                 yahpo_dir: str | None = None, workers: int = 2, allow_mixed: bool = False,
                 allow_dirty: bool = False, progress: bool = True) -> dict[str, str]:
    """Run (or resume) `protocol` into `out`; returns the provenance of this call's rows."""
    origin = provenance()
    if origin["commit"].endswith("+dirty") and not allow_dirty:
        raise SystemExit("metaprior bench: error: the working tree has uncommitted changes, so "
                         "the rows could not be reproduced from their commit; commit first "
                         "(or pass --allow-dirty)")
    out.mkdir(parents=True, exist_ok=True)
    # Every file's commit is checked before hours of work start.
    cal_path = out / "calibration.csv"
    check_one_commit(read_calibration(cal_path, protocol), cal_path, origin, allow_mixed)
    pending = []
    for block in protocol.blocks:
        path = out / f"{block.name}.csv"
        existing = repair_results(path, block.budget)
        check_one_commit(existing, path, origin, allow_mixed)
        pending.append((block, path, completed_runs(existing, block.budget)))
    cache = str(out / "cache") if cache is None else cache
    methods = sorted({m for b in protocol.blocks for m in b.methods} | {"metaprior"})
    for family in protocol.families:
        build_context(family, cache, methods, yahpo_dir, protocol.quick, progress=progress)
    run_calibration(protocol, cal_path, cache, yahpo_dir, origin)
    planned = []
    for block, path, done in pending:
        runs = plan_runs(list(protocol.families), list(block.methods), block.tasks, block.seeds,
                         block.budget, block.name, cache, yahpo_dir, done)
        planned += [(path, run) for run in runs]
    # Stable sort: the comparison that matters most (bo against the default) runs first.
    planned.sort(key=lambda item: item[1].method not in protocol.first)
    execute(planned, cache, yahpo_dir, workers, origin, progress=progress)
    return origin


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.protocol",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="standard")
    p.add_argument("--out", default="benchmarks/results/v3")
    p.add_argument("--cache", default=None, help="trained priors and baselines (default: "
                                                 "<out>/cache, trained on this commit)")
    p.add_argument("--workers", type=int, default=2, help="processes, one thread each")
    p.add_argument("--yahpo-data", default=None,
                   help="YAHPO surrogates (default: $METAPRIOR_YAHPO_DATA)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="append to files that hold rows of another commit")
    p.add_argument("--allow-dirty", action="store_true",
                   help="run from a tree with uncommitted changes (rows say +dirty)")
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    p.add_argument("--readme", default="README.md", help="README whose section to rewrite")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    yahpo_dir = args.yahpo_data or os.environ.get("METAPRIOR_YAHPO_DATA")
    protocol = PROTOCOLS[args.protocol]
    out = Path(args.out)
    run_protocol(protocol, out, args.cache, yahpo_dir, args.workers, args.allow_mixed,
                 args.allow_dirty, progress=not args.no_progress)
    if not args.no_report:
        from benchmarks import protocol_report

        report_args = [str(out), "--protocol", args.protocol, "--readme", args.readme]
        if args.allow_mixed:
            report_args.append("--allow-mixed")
        return protocol_report.main(report_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
