"""The service's tables (SQLAlchemy 2 declarative models) and the schema version they make.

One file holds every table, so that a schema change and its migration (`metaprior.service.db`)
are reviewed together. JSON documents (spaces, parameters, configs) are stored as text, not as
a database JSON type: SQLite and PostgreSQL then hold byte-identical documents, and PostgreSQL's
JSONB would refuse strings holding a NUL character that JSON itself allows.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Bump with a migration in db.MIGRATIONS whenever a table changes. History:
#   1: the first schema.
#   2: jobs indexed by state (every worker's poll filters on it).
#   3: jobs.cross_validate_steps (a job may choose its outer steps by cross-validation).
SCHEMA_VERSION = 3


class Base(DeclarativeBase):
    pass


class SchemaRow(Base):
    """One row: the schema version the store was last migrated to."""

    __tablename__ = "metaprior_schema"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


class FamilyRow(Base):
    """A family: a name, a typed space and a direction; `current_prior` is the version that new
    studies start with (None: no prior, plain BO)."""

    __tablename__ = "families"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    space: Mapped[str] = mapped_column(Text, nullable=False)
    direction: Mapped[str] = mapped_column(String(16), nullable=False)
    current_prior: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[float] = mapped_column(Float, nullable=False)


class PriorRow(Base):
    """One version of a family's prior: the prior file's bytes."""

    __tablename__ = "priors"
    __table_args__ = (UniqueConstraint("family_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # "upload" or "trained"
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[float] = mapped_column(Float, nullable=False)


class StudyRow(Base):
    """A study of a family. Its row is the per-study lock: asks hold it while they propose."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), nullable=False)
    seed: Mapped[int] = mapped_column(Integer, nullable=False)
    prior_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    options: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # "active" or "finished"
    pending_timeout: Mapped[float | None] = mapped_column(Float, nullable=True)
    created: Mapped[float] = mapped_column(Float, nullable=False)


class TrialRow(Base):
    """One evaluation of a study: proposed by an ask ("pending" until told) or added."""

    __tablename__ = "trials"
    __table_args__ = (Index("ix_trials_study", "study_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), nullable=False)
    params: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # pending/complete/abandoned
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # prior/sobol/bo/added/...
    created: Mapped[float] = mapped_column(Float, nullable=False)
    completed: Mapped[float | None] = mapped_column(Float, nullable=True)


class JobRow(Base):
    """A training job: queued by a request, claimed and run by a worker process."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state", "state", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # queued/running/done/failed
    config: Mapped[str] = mapped_column(Text, nullable=False)
    seed: Mapped[int] = mapped_column(Integer, nullable=False)
    include_unfinished: Mapped[bool] = mapped_column(Boolean, nullable=False)
    cross_validate_steps: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    progress: Mapped[float] = mapped_column(Float, nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    prior_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker: Mapped[str | None] = mapped_column(Text, nullable=True)
    heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    created: Mapped[float] = mapped_column(Float, nullable=False)
    finished: Mapped[float | None] = mapped_column(Float, nullable=True)
