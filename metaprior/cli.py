"""The `metaprior` command: train, inspect, evaluate and list priors; run benchmarks and the demo.

Every subcommand has `--help`. Bad input (a bad option, a missing or corrupt prior, an unknown
family, a bad config value) prints one line `metaprior: error: <message>` on stderr and exits
with 2; an operating-system failure (disk full, permission denied) or running out of memory
exits with 1; Ctrl-C exits with 130. Set `METAPRIOR_DEBUG=1` to get the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

from metaprior.__main__ import EXIT_INTERRUPTED
from metaprior.config import OUTER_OPTIMIZERS
from metaprior.errors import ConfigError, MetaPriorError, TaskFamilyError

PROG = "metaprior"


class CommandError(MetaPriorError):
    """A command-line usage problem found after parsing (e.g. neither --out nor --name)."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the usage block buried the message under 17 lines."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message} (see `{self.prog} --help`)\n")


def is_out_of_memory(e: BaseException) -> bool:
    """A failed allocation: `MemoryError`, CUDA's `OutOfMemoryError`, or the CPU allocator's
    RuntimeError."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    return isinstance(e, RuntimeError) and ("can't allocate memory" in str(e)
                                            or "out of memory" in str(e))


# ---- helpers ---------------------------------------------------------------------------
def parse_hidden(text: str) -> tuple[int, ...]:
    """'32,32,32' -> (32, 32, 32)."""
    try:
        return tuple(int(w) for w in str(text).split(",") if w.strip())
    except ValueError:
        raise ConfigError(f"--hidden must be comma-separated integers like 32,32,32 "
                          f"(got {text!r})") from None


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # unreachable


def load_prior(ref: str):
    """A prior from a path, or from the default store when `ref` is a stored name."""
    from metaprior import store
    from metaprior.prior import MetaPrior

    path = Path(ref)
    if not path.exists() and store.NAME_RE.match(ref) and not ref.endswith(store.SUFFIX):
        candidate = store.prior_path(ref)
        if candidate.exists():
            path = candidate
    return MetaPrior.load(path), path


# ---- tables of runs ------------------------------------------------------------------------
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def read_table(path: str):
    """A CSV or Parquet file of runs as a DataFrame; one-line `CommandError`s for what is not one."""
    import pandas as pd

    table = Path(path)
    if table.suffix.lower() not in TABLE_SUFFIXES:
        raise CommandError(f"--table {path!r}: give a .csv or .parquet file (got suffix "
                           f"{table.suffix!r})")
    if not table.is_file():
        raise CommandError(f"--table {path!r}: no such file")
    try:
        if table.suffix.lower() == ".csv":
            return pd.read_csv(table)
        return pd.read_parquet(table)
    except ImportError:  # pandas needs pyarrow or fastparquet for Parquet
        raise CommandError(f"--table {path!r}: reading Parquet needs pyarrow or fastparquet "
                           "(pip install pyarrow), or give a .csv file") from None
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise CommandError(f"--table {path!r} cannot be read: {e}") from None


def read_space(path: str):
    """A `SearchSpace` from `--space`: our JSON (`SearchSpace.to_dict`), or a ConfigSpace JSON
    file, told apart by its "hyperparameters" key."""
    from metaprior.space import SearchSpace

    file = Path(path)
    if not file.is_file():
        raise CommandError(f"--space {path!r}: no such file")
    try:
        d = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CommandError(f"--space {path!r} is not JSON: {e}") from None
    try:
        if isinstance(d, dict) and "hyperparameters" in d:
            return SearchSpace.from_configspace(file)
        return SearchSpace.from_dict(d)
    except ImportError as e:
        raise CommandError(f"--space {path!r} is a ConfigSpace file: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"--space {path!r}: {e}") from None


def describe_parameter(p) -> str:
    """'lr: float in [0.0001, 0.1], log' and the like, for `info` and notes."""
    from metaprior.space import Categorical, _preview

    if isinstance(p, Categorical):
        return f"{p.name}: categorical {_preview(p.choices)}"
    kind = type(p).__name__.lower()
    return f"{p.name}: {kind} in [{p.lower:g}, {p.upper:g}]{', log' if p.log else ''}"


def infer_space(df, task: str, output: str):
    """The space of a table without `--space`: every numeric column but the task and the output
    a linear float over the data's range (a constant one a one-level categorical), every string
    or bool column a categorical of its levels. Returns the space and a one-line note."""
    import pandas as pd

    from metaprior.space import Categorical, Float, SearchSpace

    params, floats, levels = [], [], []
    for col in df.columns:
        if col in (task, output):
            continue
        values = df[col]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric and values.min() < values.max():
            params.append(Float(str(col), float(values.min()), float(values.max())))
            floats.append(str(col))
            continue
        if not (numeric or pd.api.types.is_bool_dtype(values) or pd.api.types.is_object_dtype(values)
                or pd.api.types.is_string_dtype(values)):
            raise CommandError(f"column {col!r} has type {values.dtype}, which cannot be inferred as a "
                               f"parameter; give --space space.json")
        found = pd.unique(values.dropna())
        if len(found) == 0:
            raise CommandError(f"column {col!r} holds no values; drop it or give --space space.json")
        params.append(Categorical(str(col), sorted(found.tolist(), key=lambda v: (str(type(v)), str(v)))))
        levels.append(f"{col} ({len(found)} level{'s' if len(found) > 1 else ''})")
    if not params:
        raise CommandError(f"the table has no columns besides --task {task!r} and --output {output!r}")
    parts = ([f"{len(floats)} linear float(s) with bounds from the data ({', '.join(floats)})"] if floats
             else []) + ([f"{len(levels)} categorical(s) ({', '.join(levels)})"] if levels else [])
    note = (f"{PROG}: note: no --space given; the table's other columns became {' and '.join(parts)}; "
            f"give --space space.json for integers, log scales or other ranges")
    return SearchSpace(params), note


def table_family(args):
    """The `TableFamily` of `--table`, `--task`, `--output` and `--space` (or an inferred space)."""
    from metaprior.tasks.table import TableFamily

    missing = [opt for opt, value in (("--task", args.task), ("--output", args.output)) if value is None]
    if missing:
        raise CommandError(f"--table needs {' and '.join(missing)} (the task and the output columns)")
    df = read_table(args.table)
    absent = [c for c in (args.task, args.output) if c not in df.columns]
    if absent:
        raise CommandError(f"--table {args.table!r} has no column(s) {absent} (its columns: "
                           f"{list(df.columns)})")
    if args.space is not None:
        space = read_space(args.space)
    else:
        space, note = infer_space(df, args.task, args.output)
        print(note, file=sys.stderr)
    return TableFamily.from_dataframe(df, task=args.task, space=space, output=args.output,
                                      name=Path(args.table).stem)


def resolve_train_family(args):
    """A built-in or YAHPO FAMILY, or the family of `--table`: exactly one of them."""
    if args.table is not None:
        if args.family is not None:
            raise CommandError(f"give FAMILY ({args.family!r}) or --table, not both")
        return table_family(args)
    given = [opt for opt in ("task", "output", "space") if getattr(args, opt) is not None]
    if given:
        raise CommandError(f"--{given[0]} goes with --table (a table of runs)")
    if args.family is None:
        raise CommandError("give FAMILY (a built-in family or YAHPO scenario) or --table runs.csv")
    from metaprior.tasks.registry import get_family

    return get_family(args.family, args.data_dir)


# ---- train -----------------------------------------------------------------------------
# CLI option -> ReptileConfig field; values None mean "keep the preset's value".
CONFIG_OPTIONS = {
    "steps": "outer_steps", "tasks_per_step": "tasks_per_step",
    "points_per_task": "points_per_task", "inner_steps": "inner_steps",
    "inner_batch_size": "inner_batch_size", "inner_lr": "inner_lr", "outer_lr": "outer_lr",
    "hidden": "hidden", "inner_optimizer": "inner_optimizer",
    "outer_optimizer": "outer_optimizer", "adapt_steps": "adapt_steps",
    "chunk_size": "chunk_size", "checkpoint_every": "checkpoint_every",
    "max_memory_mb": "max_memory_mb",
}


def build_config(args):
    from metaprior.config import ReptileConfig

    cfg = ReptileConfig.seed() if args.preset == "seed" else ReptileConfig()
    changes = {}
    for opt, field in CONFIG_OPTIONS.items():
        value = getattr(args, opt)
        if value is not None:
            changes[field] = parse_hidden(value) if opt == "hidden" else value
    if args.no_anneal:
        changes["anneal"] = False
    return dataclasses.replace(cfg, **changes)  # __post_init__ validates: ConfigError


def check_train_paths(args, targets: list[tuple[str, Path]], checkpoint: Path) -> None:
    """Every check a path needs, before training rather than after it."""
    from metaprior.meta.distributed import rank_and_size
    from metaprior.priorfile import check_writable_file

    if rank_and_size()[0] != 0:  # under torchrun only rank 0 writes
        return
    for option, path in targets:
        check_writable_file(path, option)
    if args.resume and not checkpoint.is_file():
        raise CommandError(f"--resume: no checkpoint at {checkpoint} to continue from; drop "
                           f"--resume to start afresh, or give its path with --checkpoint")


def cross_validated_config(family, cfg, args):
    """`cfg` with the outer steps `cross_validate_outer_steps` chooses on a table, and its record.

    Repeated identically by `--resume` (the same table, config and seed), so the checkpoint's
    run matches."""
    from metaprior.meta.distributed import rank_and_size
    from metaprior.meta.early_stopping import cross_validate_outer_steps
    from metaprior.tasks.table import TableFamily

    if not isinstance(family, TableFamily):
        raise CommandError(f"--cross-validate-steps needs a table of runs (--table or a YAHPO "
                           f"scenario); {family.name} draws new tasks at every step")
    validation = cross_validate_outer_steps(family, cfg, seed=args.seed, device=args.device,
                                            progress=not args.no_progress)
    if rank_and_size()[0] == 0:  # under torchrun only rank 0 talks
        print(f"cross-validation over {validation['folds']} folds of the table's tasks chose "
              f"{validation['outer_steps']} of {cfg.outer_steps} outer steps", file=sys.stderr)
    return dataclasses.replace(cfg, outer_steps=validation["outer_steps"]), validation


def cmd_train(args) -> int:
    from metaprior import store
    from metaprior.meta.distributed import rank_and_size
    from metaprior.meta.reptile import meta_train

    if args.out is None and args.name is None:
        raise CommandError("give --out PATH, --name NAME (save into the store), or both")
    if args.max_steps is not None and args.max_steps < 1:
        raise CommandError(f"--max-steps must be >= 1 (got {args.max_steps})")
    targets = []
    if args.out is not None:
        targets.append(("--out", Path(args.out)))
    if args.name is not None:
        targets.append(("--name", store.prior_path(args.name, args.store)))
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(f"{targets[0][1]}.ckpt")
    cfg = build_config(args)
    family = resolve_train_family(args)
    check_train_paths(args, targets, checkpoint)
    validation = None
    if args.cross_validate_steps:
        cfg, validation = cross_validated_config(family, cfg, args)
    try:
        prior = meta_train(family, cfg, seed=args.seed, device=args.device,
                           progress=not args.no_progress, checkpoint=checkpoint,
                           resume=args.resume, log_dir=args.log_dir, max_steps=args.max_steps)
    except KeyboardInterrupt:
        if rank_and_size()[0] == 0:
            if checkpoint.exists():
                print(f"{PROG}: interrupted; checkpoint saved to {checkpoint}; continue with "
                      f"the same command plus --resume", file=sys.stderr)
            else:
                print(f"{PROG}: interrupted before the first checkpoint; nothing to resume",
                      file=sys.stderr)
        return EXIT_INTERRUPTED
    if rank_and_size()[0] != 0:  # under torchrun only rank 0 writes and talks
        return 0
    if validation is not None:
        prior.stats["cross_validation"] = validation
    for _, path in targets:
        prior.save(path)
    done = int(prior.stats.get("outer_steps_done", cfg.outer_steps))
    seconds = float(prior.stats.get("seconds", 0.0))
    where = " and ".join(str(p) for _, p in targets)
    print(f"saved {family.name} prior ({done}/{cfg.outer_steps} outer steps, {seconds:.1f} s) "
          f"to {where}")
    if done < cfg.outer_steps:
        print(f"stopped early at step {done}; checkpoint {checkpoint} kept, continue with "
              f"--resume")
    else:
        checkpoint.unlink(missing_ok=True)  # finished: the prior file holds everything
    return 0


# ---- info ------------------------------------------------------------------------------
def cmd_info(args) -> int:
    import torch

    prior, path = load_prior(args.path)
    header = prior.header()
    size = path.stat().st_size
    if args.json:
        print(json.dumps({"path": str(path), "size": size, **header}, indent=2, sort_keys=True))
        return 0
    space = prior.space
    lo, hi = prior.bounds.tolist()
    stats = dict(prior.stats)
    history = stats.pop("loss_history", None)
    sp = prior.shift_prior
    rows = [
        ("file", f"{path} ({human_size(size)})"),
        ("format", f"metaprior version {header['format_version']}"),
        ("family", prior.family),
        ("dim", str(prior.dim) if space.is_box else
         f"{prior.dim} encoded columns ({space.dim} parameters; the network sees the unit cube)"),
        ("parameters", "; ".join(map(describe_parameter, space.parameters))),
    ]
    if space.is_box:
        rows.append(("bounds", "; ".join(f"{n} in [{a:g}, {b:g}]" for n, a, b in
                                         zip(space.names, lo, hi, strict=True))))
    rows += [
        ("outputs", f"mean {prior.y_mean:.6g}, std {prior.y_std:.6g} (family-level)"),
        ("network", f"{prior.dim} -> {' -> '.join(map(str, prior.config.hidden))} -> 1, tanh"),
    ]
    if prior.n_adapted:
        rows.append(("adapted", f"to {prior.n_adapted} observations"))
    rows.append(("config", ", ".join(f"{k}={v}" for k, v in prior.config.to_dict().items())))
    rows.append(("training", ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "-"))
    if sp is not None:
        sd = ", ".join(f"{v**0.5:.3g}" for v in torch.tensor(sp.cov).diagonal().tolist())
        rows.append(("shift", f"t mean [{', '.join(f'{v:.3g}' for v in sp.mean)}], sd [{sd}] "
                              f"(unit cube); residual {sp.resid_sd:.3g}, scale sd "
                              f"{sp.scale_sd:.3g}, offset sd {sp.offset_sd:.3g} "
                              f"({sp.n_tasks} tasks; the default's shift ensemble, mode 'shift')"))
    if history:
        rows.append(("loss", f"{history[0]:.4g} (first logged) -> {history[-1]:.4g} (last), "
                             f"pre-adaptation MSE, standardised outputs"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


# ---- eval ------------------------------------------------------------------------------
def parse_shots(text: str) -> list[int]:
    try:
        shots = [int(w) for w in str(text).split(",") if w.strip()]
    except ValueError:
        raise ConfigError(f"--shots must be comma-separated integers (got {text!r})") from None
    return shots


def cmd_eval(args) -> int:
    from metaprior.meta.evaluate import evaluate_few_shot, few_shot_table
    from metaprior.tasks.registry import get_family

    prior, path = load_prior(args.path)
    name = args.family or prior.family
    try:
        family = get_family(name, args.data_dir)
    except TaskFamilyError as e:
        if args.family is None:
            raise TaskFamilyError(f"the prior's family {name!r} is not built in; pass --family "
                                  f"({e})") from None
        raise
    if args.tasks < 1:
        raise ConfigError(f"--tasks must be >= 1 (got {args.tasks})")
    df = evaluate_few_shot(prior, family, shots=parse_shots(args.shots), n_tasks=args.tasks,
                           seed=args.seed)
    if args.json:
        print(df.to_json(orient="records"))
        return 0
    print(f"few-shot MSE on {args.tasks} held-out {family.name} tasks (seed {args.seed}), "
          f"in units of the family's output variance; lower is better")
    print(few_shot_table(df).to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


# ---- list ------------------------------------------------------------------------------
def cmd_list(args) -> int:
    from metaprior import store

    root = store.resolve_store(args.store)
    found = store.entries(root)
    if args.json:
        print(json.dumps([{**dataclasses.asdict(e), "path": str(e.path),
                           "mtime": e.mtime.isoformat(timespec="seconds")} for e in found]))
        return 0
    if not found:
        print(f"no priors in {root}")
        return 0
    head = ("name", "family", "dim", "steps", "size", "modified")
    rows = [(e.name, e.family or f"(unreadable: {e.error})", "-" if e.dim is None else str(e.dim),
             "-" if e.steps is None else str(e.steps), human_size(e.size),
             e.mtime.strftime("%Y-%m-%d %H:%M")) for e in found]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"priors in {root}")
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


# ---- bench and demo ----------------------------------------------------------------------
# The folder above the package: in a clone of the repository it holds benchmarks/; an installed
# package's (site-packages) does not, and `bench` says so.
REPOSITORY = Path(__file__).resolve().parents[1]


def import_benchmarks(module: str):
    """`benchmarks.<module>` of the repository (benchmarks/ is not part of the installed
    package); a one-line `CommandError` where it cannot be imported."""
    if (REPOSITORY / "benchmarks").is_dir() and str(REPOSITORY) not in sys.path:
        sys.path.insert(0, str(REPOSITORY))
    try:
        return importlib.import_module(f"benchmarks.{module}")
    except ModuleNotFoundError as e:
        if e.name not in ("benchmarks", f"benchmarks.{module}"):
            raise
        raise CommandError(
            f"benchmarks/{module}.py not found ({e.name}); run from a clone of the metaprior "
            f"repository (it is not part of the installed package)"
        ) from None


def forwarded(args) -> list[str]:
    """The arguments after `bench` or `demo`, without a leading `--`; always a list, since
    main(None) would parse sys.argv, which still holds the subcommand."""
    rest = list(args.rest)
    return rest[1:] if rest[:1] == ["--"] else rest


def cmd_bench(args) -> int:
    rest = forwarded(args)
    try:
        main = import_benchmarks("run").main
    except CommandError:
        if "-h" in rest or "--help" in rest:
            print(f"usage: {PROG} bench [ARGS ...]\n\n{BENCH_HELP}")
            return 0
        raise
    return int(main(rest) or 0)


def cmd_demo(args) -> int:
    from metaprior.demo import main

    return int(main(forwarded(args)) or 0)


BENCH_HELP = ("Run the benchmark protocol: forwards every argument to benchmarks/run.py "
              "(in a clone of the repository); `metaprior bench --help` shows its options.")


# ---- the parser ------------------------------------------------------------------------
def cmd_serve(args) -> int:
    """`metaprior serve`: the prior service over HTTP (see metaprior.service.serve)."""
    try:
        from metaprior.service.serve import serve
    except ImportError as e:
        raise ConfigError(f"metaprior serve needs the service extra: pip install "
                          f"'metaprior[service]' ({e})") from None
    return serve(args.store, args.host, args.port, args.workers, args.token_file,
                 jobs=not args.no_jobs, log_level=args.log_level)


def build_parser() -> argparse.ArgumentParser:
    from metaprior import __version__

    p = Parser(
        prog=PROG, description="Meta-learned neural-network priors for Bayesian optimisation.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser("train", help="meta-train a prior on a task family",
                       description="Meta-train a prior with batched Reptile. Options left out "
                                   "keep the preset's value (see `ReptileConfig`).")
    t.add_argument("family", metavar="FAMILY", nargs="?",
                   help="a built-in family (e.g. branin) or a YAHPO scenario (e.g. lcbench, or "
                        "lcbench-typed over its typed space); an unknown name lists them all "
                        "(or --table instead)")
    t.add_argument("--table", metavar="RUNS", help="train on a table of past runs (.csv or "
                   ".parquet, one row per evaluation) instead of FAMILY")
    t.add_argument("--task", metavar="COL", help="with --table: the column naming each row's task")
    t.add_argument("--output", metavar="COL", help="with --table: the column to minimise")
    t.add_argument("--space", metavar="JSON", help="with --table: the search space (our JSON, "
                   "SearchSpace.to_dict, or a ConfigSpace JSON file); default: every other "
                   "numeric column a linear float over its range, string columns categoricals")
    t.add_argument("--out", metavar="PATH", help="write the prior here")
    t.add_argument("--name", help="also save the prior into the store under NAME")
    t.add_argument("--store", metavar="DIR", help="store folder for --name (default "
                   "$METAPRIOR_STORE or ~/.cache/metaprior/priors)")
    t.add_argument("--preset", choices=("default", "seed"), default="default",
                   help="starting config: our defaults, or the seed's table")
    t.add_argument("--steps", type=int, help="outer (meta) steps")
    t.add_argument("--tasks-per-step", type=int, help="tasks adapted per outer step (B)")
    t.add_argument("--points-per-task", type=int, help="points drawn per task (P)")
    t.add_argument("--inner-steps", type=int, help="inner minibatch steps per task (k)")
    t.add_argument("--inner-batch-size", type=int, help="points per inner minibatch (m)")
    t.add_argument("--inner-lr", type=float, help="inner learning rate (alpha)")
    t.add_argument("--outer-lr", type=float, help="outer learning rate (epsilon)")
    t.add_argument("--hidden", metavar="W,W,...", help="hidden widths, e.g. 32,32,32")
    t.add_argument("--inner-optimizer", choices=("sgd", "adam"))
    t.add_argument("--outer-optimizer", choices=OUTER_OPTIMIZERS)
    t.add_argument("--no-anneal", action="store_true", help="keep the outer lr constant")
    t.add_argument("--adapt-steps", type=int, help="adaptation steps at test time")
    t.add_argument("--chunk-size", type=int, help="tasks per vectorised chunk (peak memory)")
    t.add_argument("--max-memory-mb", type=float,
                   help="memory budget of the inner loop per process; derives the chunk size")
    t.add_argument("--checkpoint-every", type=int, help="outer steps between checkpoints")
    t.add_argument("--cross-validate-steps", action="store_true",
                   help="on a table, train for the outer steps (at most --steps) that "
                   "cross-validation over its tasks chooses (five extra runs)")
    t.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (default OUT.ckpt)")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    t.add_argument("--max-steps", type=int, help="stop after this many steps in this call "
                   "(continue later with --resume)")
    t.add_argument("--device", help="cpu (default), cuda, cuda:1, ...")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--log-dir", metavar="DIR", help="write TensorBoard scalars here")
    t.add_argument("--data-dir", metavar="DIR",
                   help="YAHPO data folder (default $METAPRIOR_YAHPO_DATA)")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.set_defaults(func=cmd_train)

    i = sub.add_parser("info", help="show a prior's family, bounds, config and statistics",
                       description="Describe a prior file (or a name in the default store).")
    i.add_argument("path", metavar="PATH")
    i.add_argument("--json", action="store_true", help="print the header as JSON")
    i.set_defaults(func=cmd_info)

    e = sub.add_parser("eval", help="few-shot evaluation on held-out tasks",
                       description="Held-out few-shot MSE: meta-init adapted vs random init "
                                   "adapted vs meta-init unadapted.")
    e.add_argument("path", metavar="PATH")
    e.add_argument("--family", help="family to evaluate on (default: the prior's own)")
    e.add_argument("--tasks", type=int, default=32, help="held-out tasks (default 32)")
    e.add_argument("--shots", default="1,2,3,4,5,6,7,8,9,10", help="support sizes K")
    e.add_argument("--seed", type=int, default=1, help="held-out stream seed (default 1)")
    e.add_argument("--data-dir", metavar="DIR", help="YAHPO data folder")
    e.add_argument("--json", action="store_true", help="print the long table as JSON")
    e.set_defaults(func=cmd_eval)

    ls = sub.add_parser("list", help="list the priors in a store",
                        description="List the priors of a store folder.")
    ls.add_argument("--store", metavar="DIR",
                    help="store folder (default $METAPRIOR_STORE or ~/.cache/metaprior/priors)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    b = sub.add_parser("bench", help="run the benchmarks (forwards to benchmarks/run.py)",
                       description=BENCH_HELP, add_help=False)
    b.set_defaults(func=cmd_bench)
    d = sub.add_parser("demo", help="a short demonstration (what `make demo` runs)",
                       add_help=False)  # metaprior.demo parses its own options
    d.set_defaults(func=cmd_demo)

    sv = sub.add_parser("serve", help="serve families, priors and studies over HTTP",
                        description="The prior service: ask/tell over HTTP, studies in a database, "
                                    "priors trained from finished studies (docs/service.md).")
    sv.add_argument("--store", metavar="URL", help="sqlite:///path.db, a file path, or "
                    "postgresql://user:password@host/db (default: service.db in $METAPRIOR_STORE "
                    "or ~/.cache/metaprior/priors)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--workers", type=int, default=1, help="HTTP worker processes (default 1)")
    sv.add_argument("--token-file", metavar="F", help="read the token from F (mode 600); default "
                    "$METAPRIOR_TOKEN, else a new token in the store directory")
    sv.add_argument("--no-jobs", action="store_true", help="run no training worker here (another "
                    "server on the same store runs the jobs)")
    sv.add_argument("--log-level", default="warning", help="uvicorn's log level (default warning)")
    sv.set_defaults(func=cmd_serve)
    return p


def fail(e: BaseException, code: int, prefix: str = "") -> int:
    """Print `e` as one line on stderr; returns the exit status `code`."""
    message = " ".join(str(e).split()) or type(e).__name__
    print(f"{PROG}: error: {prefix}{message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `metaprior` command; returns the exit status."""
    try:
        return run_command(argv)
    except KeyboardInterrupt:  # e.g. during the seconds of imports, before any work
        if os.environ.get("METAPRIOR_DEBUG"):
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# The compiled libraries every command loads (each takes part of the 2 s before any work).
COMPILED_LIBRARIES = ("torch", "numpy", "scipy.optimize", "pandas", "safetensors.torch",
                      "botorch")


def import_compiled_libraries() -> None:
    """Import `COMPILED_LIBRARIES` with Ctrl-C held back until they are loaded.

    A KeyboardInterrupt raised while a pybind11 extension initialises can abort the process
    (status -6, a C++ `terminate`) instead of reaching `main`'s handler. With SIGINT blocked the
    signal waits; unblocking delivers it, and it is raised here, in Python, as usual.
    """
    if (not hasattr(signal, "pthread_sigmask")  # not on Windows
            or threading.current_thread() is not threading.main_thread()):  # masks are per thread
        for name in COMPILED_LIBRARIES:
            importlib.import_module(name)
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for name in COMPILED_LIBRARIES:
            importlib.import_module(name)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_command(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ("bench", "demo"):
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    import_compiled_libraries()
    try:
        return args.func(args)
    except (MetaPriorError, OSError) as e:
        if os.environ.get("METAPRIOR_DEBUG"):
            raise
        return fail(e, 1 if isinstance(e, OSError) else 2)
    except (MemoryError, RuntimeError) as e:
        if os.environ.get("METAPRIOR_DEBUG") or not is_out_of_memory(e):
            raise
        return fail(e, 1, "out of memory; use a smaller network, --chunk-size or "
                          "--max-memory-mb: ")


if __name__ == "__main__":
    sys.exit(main())
