"""Build, cache and load each family's benchmark `Context`: prior, source data, FSBO surrogate.

Everything is learned from the family's training split only and cached under a directory, so
worker processes load it instead of training it again.

Family names (built-ins, YAHPO scenarios, "<scenario>-typed") come from the package's registry,
`metaprior.tasks.get_family`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from functools import lru_cache
from pathlib import Path

import metaprior as mp
from benchmarks.methods import Context
from metaprior.shift import attach_shift_prior
from metaprior.tasks import TableFamily, TaskFamily, get_family

SOURCE_TASKS = 64  # training tasks given to the baselines (all of them for tables, if fewer)
SOURCE_POINTS = 64  # points per source task
# Methods that learn from the source data (cached once per family, shared by them).
SOURCE_METHODS = ("rgpe", "fsbo", "portfolio")


def prior_config(family: TaskFamily, quick: bool = False) -> mp.ReptileConfig:
    """The meta-training config of the benchmark: our defaults, fitted to the family's size."""
    cfg = mp.ReptileConfig()
    n_train = family.n_train_tasks()
    if n_train is not None:
        cfg = dataclasses.replace(cfg, tasks_per_step=min(cfg.tasks_per_step, n_train))
    if quick:
        cfg = dataclasses.replace(cfg, outer_steps=150)
    return cfg


def source_tasks(family: TaskFamily) -> int:
    """How many training tasks the baselines' source data holds."""
    n_train = family.n_train_tasks()
    return SOURCE_TASKS if n_train is None else min(SOURCE_TASKS, n_train)


def source_data(family: TaskFamily, seed: int = 0) -> list:
    from benchmarks.baselines.source_data import source_data_from_family

    return source_data_from_family(family, source_tasks(family), SOURCE_POINTS, seed)


def portfolio_losses(family: TaskFamily, data: list, seed: int = 0):
    """The portfolio's `M x M` loss table, each source task's best point evaluated on every
    source task, or None when the family cannot evaluate its training tasks (the portfolio then
    estimates it from the source data)."""
    from benchmarks.baselines.portfolio import best_configurations
    from benchmarks.baselines.training_tasks import (
        check_reproduces,
        evaluated_losses,
        training_objectives,
    )

    objectives = training_objectives(family, source_tasks(family), SOURCE_POINTS, seed)
    if objectives is None:
        return None
    check_reproduces(objectives, data)
    return evaluated_losses(objectives, best_configurations(data))


def build_context(name: str, cache_dir: str | os.PathLike, methods: list[str],
                  yahpo_dir: str | None = None, quick: bool = False,
                  progress: bool = True) -> None:
    """Train whatever `methods` need for family `name` and cache it in `cache_dir`."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    family = get_family(name, yahpo_dir)
    prior_path = cache / f"{name}.prior"
    if not prior_path.exists():
        cfg = prior_config(family, quick)
        validation = None
        if isinstance(family, TableFamily):
            # A table's tasks are few and fixed: train as long as cross-validation over them
            # says, as the README advises users (`mp.cross_validate_outer_steps`).
            validation = mp.cross_validate_outer_steps(family, cfg, seed=0, progress=progress)
            cfg = dataclasses.replace(cfg, outer_steps=validation["outer_steps"])
        prior = mp.meta_train(family, cfg, seed=0, progress=progress,
                              checkpoint=cache / f"{name}.ckpt", resume=True)
        if validation is not None:
            prior.stats["cross_validation"] = validation
        prior.save(prior_path)
    elif any(m == "metaprior" or m.startswith("metaprior-shift") for m in methods):
        prior = mp.MetaPrior.load(prior_path)
        if prior.shift_prior is None:  # cached before priors carried a shift prior
            attach_shift_prior(prior, family, seed=0)
            prior.save(prior_path)
    if set(SOURCE_METHODS) & set(methods):
        build_source(family, cache / f"{name}.source.pkl", methods, quick)


def build_source(family: TaskFamily, src_path: Path, methods: list[str], quick: bool) -> None:
    """Cache in `src_path` the source data and what `methods` learn from it."""
    changed = not src_path.exists()
    if changed:
        blob = {"source_data": source_data(family), "fsbo_prior": None}
    else:
        with open(src_path, "rb") as f:
            blob = pickle.load(f)
    # A cache built for fewer methods gains what the others need, from the same source data.
    if "fsbo" in methods and blob["fsbo_prior"] is None:
        from benchmarks.baselines.fsbo import fsbo_meta_train

        blob["fsbo_prior"] = fsbo_meta_train(blob["source_data"], family.dim, seed=0,
                                             **({"steps": 100} if quick else {}))
        changed = True
    if "portfolio" in methods and "portfolio_losses" not in blob:
        blob["portfolio_losses"] = portfolio_losses(family, blob["source_data"])
        changed = True
    if changed:
        # An internal cache of our own objects, never loaded from elsewhere.
        with open(src_path, "wb") as f:
            pickle.dump(blob, f)


@lru_cache(maxsize=16)
def load_context(name: str, cache_dir: str, yahpo_dir: str | None = None) -> Context:
    """The cached `Context` of family `name` (built by `build_context`)."""
    cache = Path(cache_dir)
    family = get_family(name, yahpo_dir)
    ctx = Context(family=family, prior=mp.MetaPrior.load(cache / f"{name}.prior"))
    src_path = cache / f"{name}.source.pkl"
    if src_path.exists():
        with open(src_path, "rb") as f:
            blob = pickle.load(f)
        ctx.source_data, ctx.fsbo_prior = blob["source_data"], blob["fsbo_prior"]
        ctx.portfolio_losses = blob.get("portfolio_losses")
    return ctx


def held_out(family: TaskFamily, n_tasks: int) -> list:
    """The family's held-out BO tasks (fixed: seed 0 of the held-out stream or split)."""
    if isinstance(family, TableFamily) and type(family) is TableFamily:
        raise mp.errors.TaskFamilyError(f"{family.name}: a plain table has no evaluable tasks")
    return family.held_out_tasks(n_tasks, seed=0)
