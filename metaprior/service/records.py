"""The store's records: plain dataclass copies of its rows, never live rows."""

from __future__ import annotations

import json
from dataclasses import dataclass

from metaprior.service.models import FamilyRow, JobRow, StudyRow, TrialRow


@dataclass
class Family:
    name: str
    space: dict
    direction: str
    current_prior: int | None
    created: float


@dataclass
class PriorVersion:
    family: str
    version: int
    source: str
    job_id: int | None
    size: int
    created: float


@dataclass
class Study:
    name: str
    family: str
    seed: int
    prior_version: int | None
    options: dict
    state: str
    pending_timeout: float | None
    created: float


@dataclass
class Trial:
    id: int
    study: str
    params: dict
    value: float | None
    state: str
    source: str
    created: float
    completed: float | None


@dataclass
class Job:
    id: int
    family: str
    state: str
    config: dict
    seed: int
    include_unfinished: bool
    cross_validate_steps: bool
    progress: float
    message: str
    error: str | None
    prior_version: int | None
    created: float
    finished: float | None


def family_record(row: FamilyRow) -> Family:
    return Family(row.name, json.loads(row.space), row.direction, row.current_prior, row.created)


def study_record(row: StudyRow, family: str) -> Study:
    return Study(row.name, family, row.seed, row.prior_version, json.loads(row.options), row.state,
                 row.pending_timeout, row.created)


def trial_record(row: TrialRow, study: str) -> Trial:
    return Trial(row.id, study, json.loads(row.params), row.value, row.state, row.source,
                 row.created, row.completed)


def job_record(row: JobRow, family: str) -> Job:
    return Job(row.id, family, row.state, json.loads(row.config), row.seed,
               bool(row.include_unfinished), bool(row.cross_validate_steps), row.progress,
               row.message, row.error, row.prior_version, row.created, row.finished)
