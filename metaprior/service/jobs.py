"""Training jobs: a worker process that meta-trains a family's next prior from its studies.

A request only queues a job (a row of the jobs table). A worker process (`python -m
metaprior.service.jobs --store URL`, which `metaprior serve` starts beside the HTTP server)
polls that table, claims a job, builds a `TableFamily` from the family's finished studies (one
task per study), meta-trains in chunks of outer steps, reporting progress after each, and
stores the prior as the family's next version, current from then on, in the same transaction
that ends the job. A failure ends the job with an error that says what went wrong.

Several workers on one store never run a job twice (claiming locks the job's row), and a job
whose worker died (no progress for `STALE_JOB_SECONDS`) is claimed again and resumes from its
checkpoint when the new worker runs on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from metaprior.config import ReptileConfig
from metaprior.errors import MetaPriorError, TaskFamilyError
from metaprior.service.blobs import prior_to_bytes
from metaprior.service.db import STALE_JOB_SECONDS, Job, Store, Trial
from metaprior.service.errors import InvalidRequestError
from metaprior.service.studies import sign_of
from metaprior.space import SearchSpace

log = logging.getLogger("metaprior.service.jobs")

# A study is one task of the family; the network needs at least two points of a task to learn
# anything about its shape, and Reptile at least two tasks to learn what they share.
MIN_TRIALS_PER_STUDY = 2
MIN_STUDIES = 2
# Progress is reported (and the checkpoint written) this many times per job.
PROGRESS_CHUNKS = 20


# What a request may ask of a job, so that every job ends: a config beyond these would train
# for days (or for ever: JSON integers have no size limit) or exhaust memory, holding the worker.
MAX_CONFIG_INT = 1_000_000
MAX_HIDDEN_WIDTH = 4096
MAX_HIDDEN_LAYERS = 16


def check_training_config(cfg: ReptileConfig) -> ReptileConfig:
    """`cfg` if a job can run it to the end; else `InvalidRequestError` naming the field."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_CONFIG_INT:
            raise InvalidRequestError(f"config: {f.name}={value} is more than the service runs "
                                      f"({MAX_CONFIG_INT}); train that prior with "
                                      f"`metaprior train` and upload it")
    if len(cfg.hidden) > MAX_HIDDEN_LAYERS or max(cfg.hidden, default=0) > MAX_HIDDEN_WIDTH:
        raise InvalidRequestError(f"config: hidden={list(cfg.hidden)}: at most "
                                  f"{MAX_HIDDEN_LAYERS} layers of at most {MAX_HIDDEN_WIDTH} units")
    return cfg


@contextlib.contextmanager
def heartbeat(store: Store, job_id: int, worker: str,
              every: float = STALE_JOB_SECONDS / 4) -> Iterator[None]:
    """Touch the job's row every `every` seconds while the block runs: progress is reported
    between chunks of training only, and a chunk may outlast `STALE_JOB_SECONDS`, after which
    another worker would take the job for dead and run it a second time."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                store.touch_job(job_id, worker)
            except Exception as e:  # noqa: BLE001 - a missed beat is retried at the next one
                log.warning("job %d: heartbeat failed (%s: %s)", job_id, type(e).__name__, e)

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def training_frame(trials: list[Trial], space: SearchSpace, sign: float
                   ) -> tuple[pd.DataFrame, str, str, list[str]]:
    """One row per complete trial: the parameters, a task column (the study's name) and the
    output to minimise (`sign` x value). Returns the frame, the task and output columns' names
    and notes on the studies left out."""
    by_study: dict[str, list[Trial]] = {}
    for t in trials:
        by_study.setdefault(t.study, []).append(t)
    notes, rows = [], []
    task_col, out_col = "study", "objective"
    while task_col in space.names:  # a parameter may be called "study"
        task_col = "_" + task_col
    while out_col in space.names or out_col == task_col:
        out_col = "_" + out_col
    for study, ts in by_study.items():
        if len(ts) < MIN_TRIALS_PER_STUDY:
            notes.append(f"study {study!r} left out: {len(ts)} complete trial(s), fewer than "
                         f"{MIN_TRIALS_PER_STUDY}")
            continue
        rows.extend({**t.params, task_col: study, out_col: sign * t.value} for t in ts)
    return pd.DataFrame(rows), task_col, out_col, notes


def checkpoint_path(store: Store, job: Job) -> Path:
    """Where job `job` keeps its checkpoint on this machine (one per store and job)."""
    tag = hashlib.sha256(store.url.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "metaprior-jobs" / f"{tag}-job{job.id}.ckpt"


def run_job(store: Store, job: Job, worker: str) -> None:
    """Train job `job` (claimed by `worker`) and store its prior; errors propagate."""
    from metaprior.meta.early_stopping import cross_validate_outer_steps
    from metaprior.meta.reptile import meta_train
    from metaprior.tasks.table import TableFamily

    family = store.get_family(job.family)
    space = SearchSpace.from_dict(family.space)
    cfg = check_training_config(ReptileConfig.from_dict(job.config))
    trials = store.training_trials(job.family, job.include_unfinished)
    df, task_col, out_col, notes = training_frame(trials, space, sign_of(family.direction))
    which = "studies" if job.include_unfinished else "finished studies"
    n = 0 if df.empty else df[task_col].nunique()
    if n < MIN_STUDIES:
        raise TaskFamilyError(
            f"family {job.family!r} has {n} {which} with at least {MIN_TRIALS_PER_STUDY} complete "
            f"trials; training needs {MIN_STUDIES} or more (finish studies with "
            f"Study.finish(), or train with include_unfinished=True)"
            + (f"; {'; '.join(notes)}" if notes else ""))
    fam = TableFamily.from_dataframe(df, task=task_col, space=space, output=out_col,
                                     test_tasks=[], name=job.family)
    if fam.n_train_tasks() < cfg.tasks_per_step:
        # Reptile refuses a meta-batch larger than the family; a service's family grows one
        # study at a time, so train on all the studies there are.
        notes.append(f"meta-batch shrunk from tasks_per_step={cfg.tasks_per_step} to "
                     f"{fam.n_train_tasks()}: the family has {fam.n_train_tasks()} {which}")
        cfg = dataclasses.replace(cfg, tasks_per_step=fam.n_train_tasks())
    def summary() -> str:  # what the job trains on, with the notes so far
        return f"{n} {which}, {len(df)} trials" + (f"; {'; '.join(notes)}" if notes else "")

    log.info("job %d (%s): %s", job.id, job.family, summary())
    ckpt = checkpoint_path(store, job)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    with heartbeat(store, job.id, worker):
        validation = None
        if job.cross_validate_steps:
            # Deterministic for the same studies, config and seed: a job resumed by another
            # worker chooses the same count, so its checkpoint's run still matches.
            store.update_job(job.id, worker, 0.0, f"cross-validating the outer steps on {summary()}")
            validation = cross_validate_outer_steps(fam, cfg, seed=job.seed, progress=False)
            notes.append(f"cross-validation over {validation['folds']} folds of the studies "
                         f"chose {validation['outer_steps']} of {cfg.outer_steps} outer steps")
            cfg = dataclasses.replace(cfg, outer_steps=validation["outer_steps"])
        chunk = max(1, math.ceil(cfg.outer_steps / PROGRESS_CHUNKS))
        store.update_job(job.id, worker, 0.0, f"training on {summary()}")
        while True:
            prior = meta_train(fam, cfg, seed=job.seed, progress=False, checkpoint=ckpt,
                               resume=True, max_steps=chunk, shift_prior=False)
            done = int(prior.stats.get("outer_steps_done", cfg.outer_steps))
            if done >= cfg.outer_steps:
                break
            store.update_job(job.id, worker, done / cfg.outer_steps,
                             f"outer step {done} of {cfg.outer_steps}; {summary()}")
    prior.stats["service"] = {"job": job.id, "studies": int(n), "trials": len(df),
                              "notes": notes}
    if validation is not None:
        prior.stats["cross_validation"] = validation
    version = store.finish_job(job.id, worker, prior_to_bytes(prior), f"done; trained on {summary()}")
    log.info("job %d (%s): stored as version %d", job.id, job.family, version.version)
    for path in (ckpt, ckpt.with_name(ckpt.name + ".lock")):
        path.unlink(missing_ok=True)


def work(url: str, poll: float = 1.0, once: bool = False, parent: int | None = None) -> int:
    """Claim and run jobs of the store at `url` until stopped; returns the jobs run.

    Args:
        poll: seconds between looks at an empty queue.
        once: return when the queue is empty (for tests and scripts).
        parent: exit when this process id is no longer our parent (the server that started us
            was killed), so that a killed server leaves no orphan worker.
    """
    import torch

    torch.set_num_threads(1)  # tiny networks gain nothing from threads, and the server is busy
    store = Store(url)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ran = 0
    while True:
        if parent is not None and os.getppid() != parent:
            return ran
        job = store.claim_job(worker)
        if job is None:
            if once:
                return ran
            time.sleep(poll)
            continue
        ran += 1
        try:
            run_job(store, job, worker)
        except (MetaPriorError, ValueError, OSError, RuntimeError) as e:
            log.warning("job %d failed: %s: %s", job.id, type(e).__name__, e)
            store.fail_job(job.id, worker, f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - a bug must still end the job with its reason
            log.exception("job %d failed", job.id)
            store.fail_job(job.id, worker, f"{type(e).__name__}: {e}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m metaprior.service.jobs",
                                description="Run the training jobs of a metaprior store.")
    p.add_argument("--store", required=True, help="store URL")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--once", action="store_true", help="exit when the queue is empty")
    p.add_argument("--parent", type=int, help="exit when this process is no longer the parent")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s jobs %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    work(args.store, args.poll, args.once, args.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
