"""The study store: families, prior versions, studies, trials and training jobs in one database.

A store is a database URL. `sqlite:///path.db` is the embedded default (`default_url`: a file
in the store directory of `metaprior.store`, `$METAPRIOR_STORE`); `postgresql://...` lets
several server processes, on one machine or many, share one store (psycopg 3 is the driver).

Concurrency: an ask holds its study's lock while it proposes, so that concurrent asks on one
study see each other's pending points whichever process serves them. The lock lives in the
database: on PostgreSQL the study's row (`SELECT ... FOR UPDATE`), on SQLite the database's
write lock (`BEGIN IMMEDIATE`), which SQLite only has at database level.

Everything the store returns is a plain record (a dataclass copy), never a live row.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from metaprior.service.engine import DB_FILE, default_url, make_engine, normalize_url, storable
from metaprior.service.errors import AlreadyExistsError, ConflictError, NotFoundError, StoreVersionError
from metaprior.service.models import (
    SCHEMA_VERSION,
    Base,
    FamilyRow,
    JobRow,
    PriorRow,
    SchemaRow,
    StudyRow,
    TrialRow,
)
from metaprior.service.records import (
    Family,
    Job,
    PriorVersion,
    Study,
    Trial,
    family_record,
    job_record,
    study_record,
    trial_record,
)

__all__ = ["DB_FILE", "Family", "Job", "PriorVersion", "Store", "Study", "StudyLock", "Trial",
           "default_url", "normalize_url"]

# A worker that has not touched its running job for this long is taken for dead, and the job
# may be claimed again (a kill -9 leaves no other trace).
STALE_JOB_SECONDS = 120.0
# PostgreSQL advisory lock key of opening (creating, migrating) a store: any fixed 64-bit number
# that other applications on the database are unlikely to use.
SCHEMA_LOCK_KEY = 0x6D65_7461_7072_696F  # "metaprio"


def _v1_to_v2(conn: Connection) -> None:
    """Index the jobs by state. (Plain SQL, which both backends speak: SQLAlchemy's own check
    for an index looks in PostgreSQL's default schema, not the search path's.)"""
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_jobs_state ON jobs (state, id)")


def _v2_to_v3(conn: Connection) -> None:
    """Jobs record whether they choose their outer steps by cross-validation; the jobs before
    did not. (FALSE: a literal both backends accept for a boolean column.)"""
    conn.exec_driver_sql("ALTER TABLE jobs ADD COLUMN cross_validate_steps BOOLEAN NOT NULL "
                         "DEFAULT FALSE")


# version -> function(connection) that migrates a store from that version to the next.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def _named_row(s: Session, model: type[FamilyRow] | type[StudyRow], kind: str, name: str,
               lock: bool):
    """The row of the family or study called `name` (locked `FOR UPDATE` if `lock`);
    `NotFoundError` naming it if there is none."""
    if not storable(name):  # a name the database cannot hold was never stored
        raise NotFoundError(f"no {kind} {name!r} in this store")
    q = select(model).where(model.name == name)
    row = s.execute(q.with_for_update() if lock else q).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no {kind} {name!r} in this store")
    return row


# ---- the store ------------------------------------------------------------------------------
class Store:
    """A study store at a database URL; creates or migrates the schema on open.

    Args:
        url: `sqlite:///path.db` or `postgresql://user:password@host/db`; None: `default_url()`.

    Raises:
        ConfigError: a URL that is not a store URL.
        StoreVersionError: the store was written by a newer metaprior.
    """

    def __init__(self, url: str | None = None):
        self.url = normalize_url(url if url is not None else default_url())
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.schema_version = self._open_schema()

    def close(self) -> None:
        self.engine.dispose()

    # ---- schema -----------------------------------------------------------------------
    def _open_schema(self) -> int:
        with self._write() as s:
            if not self.is_sqlite:
                # Servers opening a new PostgreSQL store at once would race in CREATE TABLE
                # (PostgreSQL's catalog refuses the second, a startup crash); an advisory lock
                # held to the end of this transaction makes them take turns. SQLite's BEGIN
                # IMMEDIATE already does.
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            Base.metadata.create_all(s.connection())
            # Locked: two servers opening an old store at once migrate it once.
            row = s.get(SchemaRow, 1, with_for_update=True)
            if row is None:
                s.add(SchemaRow(id=1, version=SCHEMA_VERSION))
                return SCHEMA_VERSION
            if row.version > SCHEMA_VERSION:
                raise StoreVersionError(
                    f"store {self.url!r} has schema version {row.version}, newer than this "
                    f"metaprior's {SCHEMA_VERSION}; upgrade metaprior to open it")
            while row.version < SCHEMA_VERSION:
                MIGRATIONS[row.version](s.connection())
                row.version += 1
            return row.version

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as s:
            yield s

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction, committed on success. On SQLite it holds the database's write
        lock from its first statement (`BEGIN IMMEDIATE`)."""
        bind = self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite \
            else self.engine
        with Session(bind, expire_on_commit=False) as s, s.begin():
            yield s

    # ---- families ---------------------------------------------------------------------
    def _family_row(self, s: Session, name: str, lock: bool = False) -> FamilyRow:
        return _named_row(s, FamilyRow, "family", name, lock)

    def create_family(self, name: str, space: dict, direction: str) -> Family:
        try:
            with self._write() as s:
                if s.execute(select(FamilyRow.id).where(FamilyRow.name == name)).first():
                    raise AlreadyExistsError(f"family {name!r} exists already")
                row = FamilyRow(name=name, space=json.dumps(space), direction=direction,
                                current_prior=None, created=time.time())
                s.add(row)
                s.flush()
                return family_record(row)
        except IntegrityError:  # another process created it between our check and insert
            raise AlreadyExistsError(f"family {name!r} exists already") from None

    def get_family(self, name: str) -> Family:
        with self._read() as s:
            return family_record(self._family_row(s, name))

    def list_families(self) -> list[Family]:
        with self._read() as s:
            return [family_record(r) for r in s.execute(select(FamilyRow).order_by(FamilyRow.id)).scalars()]

    # ---- priors -----------------------------------------------------------------------
    def _add_prior(self, s: Session, fam: FamilyRow, data: bytes, source: str,
                   job_id: int | None) -> PriorVersion:
        """Insert the next version and make it current, in the caller's transaction (the
        family's row is locked, so two new versions never get one number)."""
        last = s.execute(select(func.max(PriorRow.version)).where(PriorRow.family_id == fam.id)
                         ).scalar()
        row = PriorRow(family_id=fam.id, version=(last or 0) + 1, data=data, source=source,
                       job_id=job_id, created=time.time())
        s.add(row)
        fam.current_prior = row.version
        return PriorVersion(fam.name, row.version, source, job_id, len(data), row.created)

    def add_prior(self, family: str, data: bytes, source: str = "upload") -> PriorVersion:
        """Store `data` (a prior file's bytes) as the family's next version, now current."""
        with self._write() as s:
            return self._add_prior(s, self._family_row(s, family, lock=True), data, source, None)

    def get_prior(self, family: str, version: int | None = None) -> tuple[int, bytes]:
        """`(version, bytes)` of a version (None: the current one)."""
        with self._read() as s:
            fam = self._family_row(s, family)
            version = fam.current_prior if version is None else version
            if version is None:
                raise NotFoundError(f"family {family!r} has no prior yet")
            data = s.execute(select(PriorRow.data).where(PriorRow.family_id == fam.id,
                                                         PriorRow.version == version)).scalar()
            if data is None:
                raise NotFoundError(f"family {family!r} has no prior version {version}")
            return version, bytes(data)

    def list_priors(self, family: str) -> list[PriorVersion]:
        with self._read() as s:
            fam = self._family_row(s, family)
            rows = s.execute(select(PriorRow.version, PriorRow.source, PriorRow.job_id,
                                    func.length(PriorRow.data), PriorRow.created)
                             .where(PriorRow.family_id == fam.id).order_by(PriorRow.version))
            return [PriorVersion(family, *r) for r in rows]

    # ---- studies ----------------------------------------------------------------------
    def create_study(self, family: str, name: str, seed: int, options: dict,
                     pending_timeout: float | None = None) -> Study:
        """A new study of `family`, starting from the family's current prior."""
        try:
            with self._write() as s:
                fam = self._family_row(s, family)
                if s.execute(select(StudyRow.id).where(StudyRow.name == name)).first():
                    raise AlreadyExistsError(f"study {name!r} exists already")
                row = StudyRow(name=name, family_id=fam.id, seed=seed,
                               prior_version=fam.current_prior, options=json.dumps(options),
                               state="active", pending_timeout=pending_timeout,
                               created=time.time())
                s.add(row)
                s.flush()
                return study_record(row, family)
        except IntegrityError:
            raise AlreadyExistsError(f"study {name!r} exists already") from None

    def _study_row(self, s: Session, name: str, lock: bool = False) -> StudyRow:
        return _named_row(s, StudyRow, "study", name, lock)

    def _family_name(self, s: Session, family_id: int) -> str:
        return s.execute(select(FamilyRow.name).where(FamilyRow.id == family_id)).scalar_one()

    def get_study(self, name: str) -> Study:
        with self._read() as s:
            row = self._study_row(s, name)
            return study_record(row, self._family_name(s, row.family_id))

    def list_studies(self, family: str | None = None) -> list[Study]:
        with self._read() as s:
            q = select(StudyRow, FamilyRow.name).join(FamilyRow, StudyRow.family_id == FamilyRow.id)
            if family is not None:
                q = q.where(FamilyRow.id == self._family_row(s, family).id)
            return [study_record(r, f) for r, f in s.execute(q.order_by(StudyRow.id))]

    def finish_study(self, name: str) -> Study:
        with self._write() as s:
            row = self._study_row(s, name, lock=True)
            row.state = "finished"
            return study_record(row, self._family_name(s, row.family_id))

    @contextlib.contextmanager
    def locked_study(self, name: str) -> Iterator[StudyLock]:
        """Hold study `name`'s lock for the block; what the block writes through the yielded
        `StudyLock` commits when the block ends (and is rolled back if it raises)."""
        with self._write() as s:
            row = self._study_row(s, name, lock=True)
            yield StudyLock(s, row, self._family_name(s, row.family_id))

    # ---- trials -----------------------------------------------------------------------
    def list_trials(self, study: str) -> list[Trial]:
        with self._read() as s:
            row = self._study_row(s, study)
            rows = s.execute(select(TrialRow).where(TrialRow.study_id == row.id)
                             .order_by(TrialRow.id)).scalars()
            return [trial_record(r, study) for r in rows]

    def tell(self, study: str, results: list[tuple[int, float]]) -> list[Trial]:
        """Record `(trial id, value)` pairs, all or none. A value equal to the one stored is
        fine; a different one is a `ConflictError`; an abandoned trial may still be told."""
        with self._write() as s:
            st = self._study_row(s, study)
            ids = [i for i, _ in results]
            rows = {r.id: r for r in s.execute(
                select(TrialRow).where(TrialRow.id.in_(ids)).order_by(TrialRow.id)
                .with_for_update()).scalars()}
            out, now = [], time.time()
            for trial_id, value in results:
                row = rows.get(trial_id)
                if row is None or row.study_id != st.id:
                    raise NotFoundError(f"no trial {trial_id} in study {study!r}")
                if row.state == "complete":
                    if row.value != value:
                        raise ConflictError(f"trial {trial_id} of study {study!r} was told "
                                            f"{row.value!r}; refusing {value!r}")
                else:
                    row.value, row.state, row.completed = value, "complete", now
                out.append(trial_record(row, study))
            return out

    def abandon(self, study: str, trial_id: int) -> Trial:
        """Mark a pending trial abandoned: later asks no longer treat it as pending."""
        with self._write() as s:
            st = self._study_row(s, study)
            row = s.execute(select(TrialRow).where(TrialRow.id == trial_id).with_for_update()
                            ).scalar_one_or_none()
            if row is None or row.study_id != st.id:
                raise NotFoundError(f"no trial {trial_id} in study {study!r}")
            if row.state == "complete":
                raise ConflictError(f"trial {trial_id} of study {study!r} is complete "
                                    f"(value {row.value!r}); only a pending trial is abandoned")
            row.state = "abandoned"
            return trial_record(row, study)

    # ---- jobs -------------------------------------------------------------------------
    def create_job(self, family: str, config: dict, seed: int, include_unfinished: bool,
                   cross_validate_steps: bool = False) -> Job:
        with self._write() as s:
            fam = self._family_row(s, family)
            row = JobRow(family_id=fam.id, state="queued", config=json.dumps(config), seed=seed,
                         include_unfinished=include_unfinished,
                         cross_validate_steps=cross_validate_steps, progress=0.0,
                         message="queued", error=None, prior_version=None, created=time.time())
            s.add(row)
            s.flush()
            return job_record(row, family)

    def get_job(self, job_id: int) -> Job:
        with self._read() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"no job {job_id} in this store")
            return job_record(row, self._family_name(s, row.family_id))

    def claim_job(self, worker: str) -> Job | None:
        """Take the oldest queued job (or one whose worker died) for `worker`; None if none.
        Two workers never claim one job: the row is locked (skipping rows that another
        worker is claiming) and its state set in the same transaction."""
        now = time.time()
        with self._write() as s:
            q = (select(JobRow).where((JobRow.state == "queued") | (
                (JobRow.state == "running") & (JobRow.heartbeat < now - STALE_JOB_SECONDS)))
                 .order_by(JobRow.id).limit(1).with_for_update(skip_locked=True))
            row = s.execute(q).scalar_one_or_none()
            if row is None:
                return None
            row.state, row.worker, row.heartbeat = "running", worker, now
            row.message = "started" if row.progress == 0 else "restarted after a worker died"
            return job_record(row, self._family_name(s, row.family_id))

    def update_job(self, job_id: int, worker: str, progress: float, message: str) -> None:
        """Report progress of a running job (and that its worker is alive)."""
        with self._write() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker)
                      .values(progress=progress, message=message, heartbeat=time.time()))

    def touch_job(self, job_id: int, worker: str) -> None:
        """Say that `worker` is still running job `job_id` (between progress reports), so that
        a long stretch of training is not taken for a dead worker's."""
        with self._write() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker,
                                           JobRow.state == "running")
                      .values(heartbeat=time.time()))

    def fail_job(self, job_id: int, worker: str, error: str) -> None:
        with self._write() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker)
                      .values(state="failed", error=error, message="failed",
                              finished=time.time()))

    def finish_job(self, job_id: int, worker: str, data: bytes, message: str) -> PriorVersion:
        """Store a job's prior as the family's next version and make it current, in one
        transaction with the job's end: readers see the old version or the new, never neither."""
        with self._write() as s:
            job = s.get(JobRow, job_id, with_for_update=True)
            if job is None or job.worker != worker or job.state != "running":
                raise ConflictError(f"job {job_id} is not running on worker {worker!r}")
            fam = s.execute(select(FamilyRow).where(FamilyRow.id == job.family_id)
                            .with_for_update()).scalar_one()
            version = self._add_prior(s, fam, data, "trained", job_id)
            job.state, job.progress, job.message = "done", 1.0, message
            job.prior_version, job.finished = version.version, time.time()
            return version

    def training_trials(self, family: str, include_unfinished: bool) -> list[Trial]:
        """The complete trials of the family's finished studies (or of all its studies)."""
        with self._read() as s:
            fam = self._family_row(s, family)
            q = (select(TrialRow, StudyRow.name).join(StudyRow, TrialRow.study_id == StudyRow.id)
                 .where(StudyRow.family_id == fam.id, TrialRow.state == "complete"))
            if not include_unfinished:
                q = q.where(StudyRow.state == "finished")
            return [trial_record(r, name) for r, name in s.execute(q.order_by(TrialRow.id))]


class StudyLock:
    """A study held under its lock (see `Store.locked_study`): read its trials, add trials."""

    def __init__(self, session: Session, row: StudyRow, family: str):
        self._s, self._row = session, row
        self.study = study_record(row, family)

    def trials(self) -> list[Trial]:
        rows = self._s.execute(select(TrialRow).where(TrialRow.study_id == self._row.id)
                               .order_by(TrialRow.id)).scalars()
        return [trial_record(r, self.study.name) for r in rows]

    def abandon_older_than(self, seconds: float) -> int:
        """Abandon the pending trials created more than `seconds` ago; returns how many."""
        # Locked in id order first, as `Store.tell` locks its trials: a bare UPDATE locks them
        # in whatever order it scans, and against a tell of two of them that is a deadlock.
        ids = self._s.execute(select(TrialRow.id).where(
            TrialRow.study_id == self._row.id, TrialRow.state == "pending",
            TrialRow.created < time.time() - seconds).order_by(TrialRow.id).with_for_update()
        ).scalars().all()
        if not ids:
            return 0
        self._s.execute(update(TrialRow).where(TrialRow.id.in_(ids), TrialRow.state == "pending")
                        .values(state="abandoned"))
        return len(ids)

    def add_trials(self, params: list[dict], source: str | list[str],
                   values: list[float] | None = None) -> list[Trial]:
        """Insert trials: pending ones (values None) or complete ones."""
        now = time.time()
        sources = source if isinstance(source, list) else [source] * len(params)
        rows = [TrialRow(study_id=self._row.id, params=json.dumps(p), source=src,
                         value=None if values is None else values[i],
                         state="pending" if values is None else "complete",
                         created=now, completed=None if values is None else now)
                for i, (p, src) in enumerate(zip(params, sources, strict=True))]
        self._s.add_all(rows)
        self._s.flush()
        return [trial_record(r, self.study.name) for r in rows]
