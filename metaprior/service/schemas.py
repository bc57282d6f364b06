"""The HTTP API's request and response bodies (pydantic models: the schema and the validation).

Every bound here exists so that a request the schema allows is one the store can hold: names
without control characters or '/', integers that fit the database's integer columns, finite
floats, and lists of a bounded length.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_INT = 2**31 - 1  # the database's INTEGER columns
MAX_BATCH = 1000
MAX_ASK = 32
MAX_NAME = 200

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=r"^[^/\x00-\x1f\x7f]+$",
                            description="letters, digits, spaces, punctuation; no '/' and no "
                                        "control characters; unique in the store")]
Seed = Annotated[int, Field(ge=0, le=MAX_INT)]
Id = Annotated[int, Field(ge=0, le=MAX_INT)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def check_name(value: str) -> str:
    """Refuse names a URL path cannot carry ('.', '..') or that are not valid Unicode text."""
    if value in (".", ".."):
        raise ValueError(f"{value!r} cannot be a name: a URL path reads it as a folder")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{value!r} is not valid Unicode text (a lone surrogate)") from None
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- families and priors ------------------------------------------------------------------
class FamilyCreate(Strict):
    name: Name
    space: dict[str, Any] = Field(description="a SearchSpace as SearchSpace.to_dict() writes it")
    direction: Literal["minimize", "maximize"] = "minimize"

    _name = field_validator("name")(check_name)


class FamilyOut(BaseModel):
    name: str
    space: dict[str, Any]
    direction: str
    current_prior: int | None = Field(description="the version new studies start with")
    created: float


class PriorUpload(Strict):
    data: str = Field(max_length=64 * 2**20, description="the prior file's bytes, base64")


class PriorVersionOut(BaseModel):
    family: str
    version: int
    source: str = Field(description='"upload" or "trained"')
    job_id: int | None
    size: int
    created: float


class PriorFileOut(PriorVersionOut):
    data: str = Field(description="the prior file's bytes, base64")


class TrainRequest(Strict):
    config: dict[str, Any] | None = Field(
        None, description="ReptileConfig fields (ReptileConfig.to_dict()); None: the defaults")
    seed: Seed = 0
    include_unfinished: bool = Field(False, description="train on unfinished studies too")
    cross_validate_steps: bool = Field(
        False, description="choose the outer steps (at most config's) by cross-validation over "
        "the studies (metaprior.cross_validate_outer_steps); costs 5 more training runs")


class JobOut(BaseModel):
    id: int
    family: str
    state: str = Field(description="queued, running, done or failed")
    progress: float
    message: str
    error: str | None
    prior_version: int | None
    config: dict[str, Any]
    seed: int
    include_unfinished: bool
    cross_validate_steps: bool
    created: float
    finished: float | None


# ---- studies ------------------------------------------------------------------------------
class OptimizerOptions(Strict):
    mode: Literal["trusted", "mean", "weighted", "kernel", "both", "shift"] | None = None
    n_init: Annotated[int, Field(ge=1, le=1000)] | None = None
    num_restarts: Annotated[int, Field(ge=1, le=64)] | None = None
    raw_samples: Annotated[int, Field(ge=1, le=8192)] | None = None
    trust_region: Annotated[float, Field(gt=0, le=1)] | None = None


class StudyCreate(Strict):
    family: Name
    name: Name
    seed: Seed = 0
    options: OptimizerOptions | None = Field(None, description="Optimizer settings")
    pending_timeout: Annotated[float, Field(gt=0, le=1e9)] | None = Field(
        None, description="seconds after which an untold trial is abandoned at the next ask")

    _name = field_validator("name", "family")(check_name)


class StudyOut(BaseModel):
    name: str
    family: str
    seed: int
    prior_version: int | None = Field(description="the prior version the study started with")
    options: dict[str, Any]
    state: str = Field(description='"active" or "finished"')
    pending_timeout: float | None
    created: float


class AskRequest(Strict):
    n: Annotated[int, Field(ge=1, le=MAX_ASK)] = 1


class TrialOut(BaseModel):
    trial: int
    params: dict[str, Any]
    value: float | None
    state: str = Field(description="pending, complete or abandoned")
    source: str = Field(description="prior, sobol, bo or added")
    created: float
    completed: float | None


class TellItem(Strict):
    trial: Id
    value: FiniteFloat


class TellRequest(Strict):
    results: list[TellItem] = Field(min_length=1, max_length=MAX_BATCH)


class AddRequest(Strict):
    params: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH,
                                         description="raw values, one dict per evaluation")
    values: list[FiniteFloat] = Field(min_length=1, max_length=MAX_BATCH)


class Health(BaseModel):
    status: str
    schema_version: int

