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

SOURCE_TASKS = 64  # training tasks given to RGPE and FSBO (all of them for tables, if fewer)
SOURCE_POINTS = 64  # points per source task


def prior_config(family: TaskFamily, quick: bool = False) -> mp.ReptileConfig:
    """The meta-training config of the benchmark: our defaults, fitted to the family's size."""
    cfg = mp.ReptileConfig()
    n_train = family.n_train_tasks()
    if n_train is not None:
        cfg = dataclasses.replace(cfg, tasks_per_step=min(cfg.tasks_per_step, n_train))
    if quick:
        cfg = dataclasses.replace(cfg, outer_steps=150)
    return cfg


def source_data(family: TaskFamily, seed: int = 0) -> list:
    from benchmarks.baselines.source_data import source_data_from_family

    n_train = family.n_train_tasks()
    n_tasks = SOURCE_TASKS if n_train is None else min(SOURCE_TASKS, n_train)
    return source_data_from_family(family, n_tasks, SOURCE_POINTS, seed)


def build_context(name: str, cache_dir: str | os.PathLike, methods: list[str],
                  yahpo_dir: str | None = None, quick: bool = False,
                  progress: bool = True) -> None:
    """Train whatever `methods` need for family `name` and cache it in `cache_dir`."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    family = get_family(name, yahpo_dir)
    prior_path = cache / f"{name}.prior"
    if not prior_path.exists():
        prior = mp.meta_train(family, prior_config(family, quick), seed=0, progress=progress,
                              checkpoint=cache / f"{name}.ckpt", resume=True)
        prior.save(prior_path)
    elif any(m.startswith("metaprior-shift") for m in methods):
        prior = mp.MetaPrior.load(prior_path)
        if prior.shift_prior is None:  # cached before priors carried a shift prior
            attach_shift_prior(prior, family, seed=0)
            prior.save(prior_path)
    needs_source = {"rgpe", "fsbo"} & set(methods)
    src_path = cache / f"{name}.source.pkl"
    if needs_source and not src_path.exists():
        data = source_data(family)
        fsbo_prior = None
        if "fsbo" in methods:
            from benchmarks.baselines.fsbo import fsbo_meta_train

            fsbo_prior = fsbo_meta_train(data, family.dim, seed=0,
                                         **({"steps": 100} if quick else {}))
        # An internal cache of our own objects, never loaded from elsewhere.
        with open(src_path, "wb") as f:
            pickle.dump({"source_data": data, "fsbo_prior": fsbo_prior}, f)


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
    return ctx


def held_out(family: TaskFamily, n_tasks: int) -> list:
    """The family's held-out BO tasks (fixed: seed 0 of the held-out stream or split)."""
    if isinstance(family, TableFamily) and type(family) is TableFamily:
        raise mp.errors.TaskFamilyError(f"{family.name}: a plain table has no evaluable tasks")
    return family.held_out_tasks(n_tasks, seed=0)
