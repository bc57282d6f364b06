"""The HTTP API of the prior service: a FastAPI app over a `Store`.

`create_app(store_url, token)` builds the app; `metaprior serve` runs it under uvicorn. Every
route lives under `/v1` and needs `Authorization: Bearer <token>` (one dependency on the
router, compared in constant time), except `GET /v1/health`; so does the schema at
`/openapi.json`. Errors carry a JSON `detail`:
401 for a missing or wrong token, 404 for an unknown family, prior version, study, trial or job,
409 for a name that exists or a conflicting tell, 422 for a request the schema or the space
refuses, 503 when the database cannot be reached or has no free connection (retry).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import os
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from metaprior.config import ReptileConfig
from metaprior.errors import MetaPriorError
from metaprior.service import schemas as S
from metaprior.service.db import Family, Job, PriorVersion, Store, Study, Trial
from metaprior.service.errors import InvalidRequestError, ServiceError, UnauthorizedError
from metaprior.service.jobs import check_training_config
from metaprior.service.studies import (
    StudyService,
    check_float_sized,
    check_options,
    check_prior,
    read_space,
)

log = logging.getLogger("metaprior.service")

TOKEN_ENV = "METAPRIOR_TOKEN"
STORE_ENV = "METAPRIOR_STORE_URL"

bearer = HTTPBearer(auto_error=False, description="the deployment's token")


def require_token(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                  ) -> None:
    """401 unless the request carries the deployment's token."""
    expected = request.app.state.token.encode()
    given = b"" if credentials is None else credentials.credentials.encode("utf-8", "replace")
    # compare_digest takes as long for a near miss as for a far one: the token cannot be
    # guessed byte by byte from response times.
    if credentials is None or not hmac.compare_digest(given, expected):
        raise UnauthorizedError("missing or wrong token: send Authorization: Bearer <token>")


def store_of(request: Request) -> Store:
    return request.app.state.store


def service_of(request: Request) -> StudyService:
    return request.app.state.service


# ---- record -> response -------------------------------------------------------------------
def family_out(f: Family) -> S.FamilyOut:
    return S.FamilyOut(name=f.name, space=f.space, direction=f.direction,
                       current_prior=f.current_prior, created=f.created)


def prior_out(p: PriorVersion) -> S.PriorVersionOut:
    return S.PriorVersionOut(family=p.family, version=p.version, source=p.source,
                             job_id=p.job_id, size=p.size, created=p.created)


def study_out(s: Study) -> S.StudyOut:
    return S.StudyOut(name=s.name, family=s.family, seed=s.seed, prior_version=s.prior_version,
                      options=s.options, state=s.state, pending_timeout=s.pending_timeout,
                      created=s.created)


def trial_out(t: Trial) -> S.TrialOut:
    return S.TrialOut(trial=t.id, params=t.params, value=t.value, state=t.state, source=t.source,
                      created=t.created, completed=t.completed)


def job_out(j: Job) -> S.JobOut:
    return S.JobOut(id=j.id, family=j.family, state=j.state, progress=j.progress,
                    message=j.message, error=j.error, prior_version=j.prior_version,
                    config=j.config, seed=j.seed, include_unfinished=j.include_unfinished,
                    cross_validate_steps=j.cross_validate_steps, created=j.created, finished=j.finished)


# ---- routes -------------------------------------------------------------------------------
open_routes = APIRouter(prefix="/v1", tags=["health"])
api = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])

FamilyName = Path(max_length=S.MAX_NAME)
StudyName = Path(max_length=S.MAX_NAME)


@open_routes.get("/health", response_model=S.Health)
def health(request: Request) -> S.Health:
    return S.Health(status="ok", schema_version=store_of(request).schema_version)


@api.post("/families", response_model=S.FamilyOut, status_code=201, tags=["families"])
def create_family(body: S.FamilyCreate, request: Request) -> S.FamilyOut:
    space = read_space(body.space)
    return family_out(store_of(request).create_family(body.name, space.to_dict(), body.direction))


@api.get("/families", response_model=list[S.FamilyOut], tags=["families"])
def list_families(request: Request) -> list[S.FamilyOut]:
    return [family_out(f) for f in store_of(request).list_families()]


@api.get("/families/{family}", response_model=S.FamilyOut, tags=["families"])
def get_family(request: Request, family: str = FamilyName) -> S.FamilyOut:
    return family_out(store_of(request).get_family(family))


@api.post("/families/{family}/priors", response_model=S.PriorVersionOut, status_code=201,
          tags=["priors"])
def upload_prior(body: S.PriorUpload, request: Request, family: str = FamilyName
                 ) -> S.PriorVersionOut:
    """A new version of the family's prior, from a prior file; new studies start with it."""
    store = store_of(request)
    fam = store.get_family(family)
    try:
        data = base64.b64decode(body.data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("data: not base64 (the prior file's bytes, base64)") from None
    check_prior(data, fam)
    return prior_out(store.add_prior(family, data))


@api.get("/families/{family}/priors", response_model=list[S.PriorVersionOut], tags=["priors"])
def list_priors(request: Request, family: str = FamilyName) -> list[S.PriorVersionOut]:
    return [prior_out(p) for p in store_of(request).list_priors(family)]


@api.get("/families/{family}/priors/{version}", response_model=S.PriorFileOut, tags=["priors"])
def get_prior(request: Request, family: str = FamilyName,
              version: int = Path(ge=1, le=S.MAX_INT)) -> S.PriorFileOut:
    store = store_of(request)
    _, data = store.get_prior(family, version)
    meta = next(p for p in store.list_priors(family) if p.version == version)
    return S.PriorFileOut(**prior_out(meta).model_dump(), data=base64.b64encode(data).decode())


@api.post("/families/{family}/priors/train", response_model=S.JobOut, status_code=202,
          tags=["priors"])
def train_prior(body: S.TrainRequest, request: Request, family: str = FamilyName) -> S.JobOut:
    """Queue a training job: the family's next prior, from its finished studies."""
    check_float_sized(body.config, "config")
    try:
        cfg = ReptileConfig.from_dict(body.config or {})
    except (MetaPriorError, ValueError, TypeError) as e:
        raise InvalidRequestError(f"config: {e}") from None
    check_training_config(cfg)
    job = store_of(request).create_job(family, cfg.to_dict(), body.seed, body.include_unfinished,
                                       body.cross_validate_steps)
    return job_out(job)


@api.get("/jobs/{job}", response_model=S.JobOut, tags=["jobs"])
def get_job(request: Request, job: int = Path(ge=0, le=S.MAX_INT)) -> S.JobOut:
    return job_out(store_of(request).get_job(job))


@api.post("/studies", response_model=S.StudyOut, status_code=201, tags=["studies"])
def create_study(body: S.StudyCreate, request: Request) -> S.StudyOut:
    store, service = store_of(request), service_of(request)
    fam = store.get_family(body.family)
    options = body.options.model_dump(exclude_none=True) if body.options else {}
    prior = None
    if fam.current_prior is not None:
        prior = service.priors.get(store, fam.name, fam.current_prior)
    check_options(read_space(fam.space), prior, options)
    return study_out(store.create_study(body.family, body.name, body.seed, options,
                                        body.pending_timeout))


@api.get("/studies", response_model=list[S.StudyOut], tags=["studies"])
def list_studies(request: Request, family: str | None = Query(None, max_length=S.MAX_NAME)
                 ) -> list[S.StudyOut]:
    return [study_out(s) for s in store_of(request).list_studies(family)]


@api.get("/studies/{study}", response_model=S.StudyOut, tags=["studies"])
def get_study(request: Request, study: str = StudyName) -> S.StudyOut:
    return study_out(store_of(request).get_study(study))


@api.post("/studies/{study}/finish", response_model=S.StudyOut, tags=["studies"])
def finish_study(request: Request, study: str = StudyName) -> S.StudyOut:
    """Mark the study finished: its trials become training data of the family's next prior."""
    return study_out(store_of(request).finish_study(study))


@api.post("/studies/{study}/ask", response_model=list[S.TrialOut], tags=["trials"])
def ask(body: S.AskRequest, request: Request, study: str = StudyName) -> list[S.TrialOut]:
    """`n` new pending trials, proposed with every pending trial of the study in view."""
    return [trial_out(t) for t in service_of(request).ask(study, body.n)]


@api.post("/studies/{study}/tell", response_model=list[S.TrialOut], tags=["trials"])
def tell(body: S.TellRequest, request: Request, study: str = StudyName) -> list[S.TrialOut]:
    """Record values by trial id, committed before the response. The same value twice is fine;
    a different value for a told trial is a 409."""
    results = [(r.trial, r.value) for r in body.results]
    return [trial_out(t) for t in service_of(request).tell(study, results)]


@api.post("/studies/{study}/add", response_model=list[S.TrialOut], status_code=201,
          tags=["trials"])
def add(body: S.AddRequest, request: Request, study: str = StudyName) -> list[S.TrialOut]:
    """Record evaluations made elsewhere (raw values and their results)."""
    return [trial_out(t) for t in service_of(request).add(study, body.params, body.values)]


@api.post("/studies/{study}/trials/{trial}/abandon", response_model=S.TrialOut, tags=["trials"])
def abandon(request: Request, study: str = StudyName,
            trial: int = Path(ge=0, le=S.MAX_INT)) -> S.TrialOut:
    """Abandon a pending trial: later asks no longer wait for it (it may still be told)."""
    return trial_out(store_of(request).abandon(study, trial))


@api.get("/studies/{study}/trials", response_model=list[S.TrialOut], tags=["trials"])
def list_trials(request: Request, study: str = StudyName) -> list[S.TrialOut]:
    return [trial_out(t) for t in store_of(request).list_trials(study)]


@api.get("/studies/{study}/best", response_model=S.TrialOut, tags=["trials"])
def best(request: Request, study: str = StudyName) -> S.TrialOut:
    return trial_out(service_of(request).best(study))


# ---- the app ------------------------------------------------------------------------------
def create_app(store_url: str | None = None, token: str | None = None) -> FastAPI:
    """The service's app over the store at `store_url` (None: `$METAPRIOR_STORE_URL`, else the
    default SQLite store), accepting `token` (None: `$METAPRIOR_TOKEN`)."""
    import torch

    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if not token:
        raise InvalidRequestError("the service needs a token: pass token= or set $METAPRIOR_TOKEN")
    # Requests run in a thread pool; one thread each, or a few concurrent model fits would
    # oversubscribe the cores (see DESIGN's facts on threads).
    torch.set_num_threads(1)
    store = Store(store_url if store_url is not None else os.environ.get(STORE_ENV))
    # The schema needs the token too (/v1/health is the one open path), so FastAPI's open
    # /openapi.json, /docs and /redoc are off and the schema is served below behind the token.
    app = FastAPI(title="metaprior prior service", version="1",
                  description="Families, priors, studies and trials of metaprior; ask/tell "
                              "over HTTP.", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.store, app.state.token = store, token
    app.state.service = StudyService(store)
    app.include_router(open_routes)
    app.include_router(api)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_token)])
    def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.exception_handler(ServiceError)
    def _service_error(_request: Request, e: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse({"detail": e.detail}, status_code=e.status or 500, headers=headers)

    @app.exception_handler(RequestValidationError)
    def _schema_violation(_request: Request, e: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, which fails to serialise (a 500) when the
        # input held a NaN or inf that Python's JSON parser let through.
        return JSONResponse({"detail": json_safe(jsonable_encoder(e.errors()))}, status_code=422)

    @app.exception_handler(MetaPriorError)
    def _bad_input(_request: Request, e: MetaPriorError) -> JSONResponse:
        return JSONResponse({"detail": f"{type(e).__name__}: {e}"}, status_code=422)

    @app.exception_handler(OperationalError)
    def _store_down(_request: Request, e: OperationalError) -> JSONResponse:
        log.error("store unavailable: %s", e)
        return JSONResponse({"detail": "the store is unavailable; retry later"}, status_code=503)

    @app.exception_handler(PoolTimeoutError)
    def _store_busy(_request: Request, e: PoolTimeoutError) -> JSONResponse:
        # More concurrent requests than the engine's connections, each waiting (an ask holds
        # its connection while it fits): the request can be retried, it is no server bug.
        log.warning("no free store connection: %s", e)
        return JSONResponse({"detail": "the store is busy (no free connection); retry later"},
                            status_code=503)

    return app


def json_safe(value):
    """`value` with every non-finite float replaced by its text ('nan', 'inf')."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def app_from_env() -> FastAPI:
    """`create_app()` from `$METAPRIOR_STORE_URL` and `$METAPRIOR_TOKEN`: the factory that
    `metaprior serve --workers N` hands uvicorn, whose worker processes import it."""
    return create_app(os.environ.get(STORE_ENV), os.environ.get(TOKEN_ENV))
