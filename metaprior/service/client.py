"""`Client`: the Python client of the prior service (HTTP via httpx).

Example:
    >>> import metaprior as mp
    >>> client = mp.service.Client("http://127.0.0.1:8000", token=token)
    >>> client.create_family("xgb", space)
    >>> study = client.create_study("xgb", name="dataset 1461", seed=0)
    >>> trials = study.ask()                  # "trial" column + one column per parameter
    >>> study.tell(trials, [train(**p) for p in trials.drop(columns="trial").to_dict("records")])
    >>> study.finish()
    >>> client.train_prior("xgb", config=mp.ReptileConfig(outer_steps=500)).wait()

Every HTTP error is raised as the class of its status (`metaprior.service.errors`):
`UnauthorizedError` (401), `NotFoundError` (404), `ConflictError` (409),
`InvalidRequestError` (422, also a `ValueError`), `ServerError` (5xx); a server that cannot be
reached or does not answer in time is a `ServiceUnavailableError`.
"""

from __future__ import annotations

import base64
import math
import time
from os import PathLike
from urllib.parse import quote

import httpx
import pandas as pd

from metaprior.config import ReptileConfig
from metaprior.errors import ConfigError, InputDataError
from metaprior.prior import MetaPrior
from metaprior.service.blobs import prior_from_bytes, prior_to_bytes
from metaprior.service.errors import (
    JobFailedError,
    ServiceError,
    ServiceUnavailableError,
    error_for,
    error_for_status,
)
from metaprior.space import SearchSpace

DEFAULT_TIMEOUT = 60.0  # an ask fits a model under the study's lock: seconds, not minutes


def _seg(name: str) -> str:
    """A name as one URL path segment."""
    return quote(str(name), safe="")


class Client:
    """A connection to a prior service.

    Args:
        url: the service's base URL, e.g. "http://127.0.0.1:8000".
        token: the deployment's token (see `metaprior serve`).
        timeout: seconds to wait for each response (an ask may wait for concurrent asks of
            the same study).
    """

    def __init__(self, url: str, token: str, timeout: float = DEFAULT_TIMEOUT):
        if not isinstance(token, str) or not token:
            raise ConfigError(f"token must be a non-empty string (got {token!r})")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- transport --------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs):
        """The JSON of a response, or the typed error of its status."""
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise ServiceUnavailableError(f"{method} {self.url}{path}: no answer within the "
                                          f"timeout ({type(e).__name__})") from None
        except httpx.TransportError as e:
            raise ServiceUnavailableError(f"{method} {self.url}{path}: cannot reach the "
                                          f"service ({type(e).__name__}: {e})") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise error_for(r.status_code, detail)
        return r.json()

    def health(self) -> dict:
        return self.request("GET", "/v1/health")

    # ---- families and priors ----------------------------------------------------------
    def create_family(self, name: str, space: SearchSpace, prior=None,
                      direction: str = "minimize") -> dict:
        """A new family: a name, a typed space and a direction ("minimize" or "maximize");
        `prior` (a `MetaPrior`, a path to a prior file, or None) becomes its first version."""
        if not isinstance(space, SearchSpace):
            raise ConfigError(f"space must be a SearchSpace (got {type(space).__name__})")
        fam = self.request("POST", "/v1/families", json={"name": name, "space": space.to_dict(),
                                                         "direction": direction})
        if prior is not None:
            self.upload_prior(name, prior)
            fam = self.family(name)
        return fam

    def family(self, name: str) -> dict:
        return self.request("GET", f"/v1/families/{_seg(name)}")

    def families(self) -> list[dict]:
        return self.request("GET", "/v1/families")

    def upload_prior(self, family: str, prior) -> dict:
        """Upload `prior` (a `MetaPrior` or a path to a prior file) as the family's next
        version; new studies start with it."""
        if isinstance(prior, MetaPrior):
            data = prior_to_bytes(prior)
        elif isinstance(prior, (str, PathLike)):
            with open(prior, "rb") as f:
                data = f.read()
        else:
            raise ConfigError(f"prior must be a MetaPrior or a path (got {type(prior).__name__})")
        return self.request("POST", f"/v1/families/{_seg(family)}/priors",
                            json={"data": base64.b64encode(data).decode()})

    def priors(self, family: str) -> list[dict]:
        return self.request("GET", f"/v1/families/{_seg(family)}/priors")

    def prior(self, family: str, version: int | None = None) -> MetaPrior:
        """A version of the family's prior (None: the current one) as a `MetaPrior`."""
        if version is None:
            version = self.family(family)["current_prior"]
            if version is None:
                raise error_for_status(404)(f"family {family!r} has no prior yet", status=404)
        out = self.request("GET", f"/v1/families/{_seg(family)}/priors/{int(version)}")
        return prior_from_bytes(base64.b64decode(out["data"]))

    def train_prior(self, family: str, config: ReptileConfig | None = None, seed: int = 0,
                    include_unfinished: bool = False, cross_validate_steps: bool = False) -> Job:
        """Queue the training of the family's next prior from its finished studies; returns
        the `Job` (call `.wait()`). With fewer finished studies than `config.tasks_per_step`,
        the job trains on all of them and says so in its message. With `cross_validate_steps`,
        the job first chooses how many of `config.outer_steps` to train
        (`metaprior.cross_validate_outer_steps` over the studies, 5 more training runs); the
        prior's `stats["cross_validation"]` records the choice."""
        if config is not None and not isinstance(config, ReptileConfig):
            raise ConfigError(f"config must be a ReptileConfig (got {type(config).__name__})")
        out = self.request("POST", f"/v1/families/{_seg(family)}/priors/train",
                           json={"config": None if config is None else config.to_dict(),
                                 "seed": seed, "include_unfinished": include_unfinished,
                                 "cross_validate_steps": cross_validate_steps})
        return Job(self, out)

    def job(self, job_id: int) -> Job:
        return Job(self, self.request("GET", f"/v1/jobs/{int(job_id)}"))

    # ---- studies ----------------------------------------------------------------------
    def create_study(self, family: str, name: str, seed: int = 0, options: dict | None = None,
                     pending_timeout: float | None = None) -> Study:
        """A new study of `family`, starting from its current prior.

        Args:
            options: `Optimizer` settings (mode, n_init, num_restarts, raw_samples,
                trust_region).
            pending_timeout: seconds after which a trial never told is abandoned, so that
                later asks stop treating it as pending.
        """
        out = self.request("POST", "/v1/studies", json={
            "family": family, "name": name, "seed": seed, "options": options,
            "pending_timeout": pending_timeout})
        return Study(self, out)

    def study(self, name: str) -> Study:
        """An existing study, by name."""
        return Study(self, self.request("GET", f"/v1/studies/{_seg(name)}"))

    def studies(self, family: str | None = None) -> list[dict]:
        return self.request("GET", "/v1/studies", params={} if family is None else
                            {"family": family})


class Study:
    """A study on the service: ask/tell with DataFrames of raw values."""

    def __init__(self, client: Client, info: dict):
        self._client, self.info = client, info
        self.name: str = info["name"]
        self.family: str = info["family"]
        self._space: SearchSpace | None = None

    @property
    def _path(self) -> str:
        return f"/v1/studies/{_seg(self.name)}"

    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            self._space = SearchSpace.from_dict(self._client.family(self.family)["space"])
        return self._space

    @property
    def prior_version(self) -> int | None:
        """The prior version the study started with (None: no prior)."""
        return self.info["prior_version"]

    def _frame(self, trials: list[dict], with_value: bool) -> pd.DataFrame:
        names = self.space.names
        rows = [{"trial": t["trial"], **{k: t["params"][k] for k in names},
                 **({"value": math.nan if t["value"] is None else t["value"],
                     "state": t["state"]} if with_value else {})} for t in trials]
        cols = ["trial", *names] + (["value", "state"] if with_value else [])
        return pd.DataFrame(rows, columns=cols)

    def ask(self, n: int = 1) -> pd.DataFrame:
        """`n` trials to evaluate: a "trial" column plus one column per parameter (raw values)."""
        return self._frame(self._client.request("POST", f"{self._path}/ask", json={"n": n}), False)

    def tell(self, trials, values) -> pd.DataFrame:
        """Record `values` (one per row, in order) for `trials` (a DataFrame with a "trial"
        column, or a list of trial ids). Committed on the server before this returns."""
        ids = trials["trial"].tolist() if isinstance(trials, pd.DataFrame) else list(trials)
        values = _floats(values)
        if len(ids) != len(values):
            raise ConfigError(f"values must hold one value per trial: {len(ids)} trials, "
                              f"{len(values)} values")
        out = self._client.request("POST", f"{self._path}/tell", json={
            "results": [{"trial": int(i), "value": v} for i, v in zip(ids, values, strict=True)]})
        return self._frame(out, True)

    def add(self, params, values) -> pd.DataFrame:
        """Record evaluations made elsewhere: `params` a DataFrame of raw values (a column per
        parameter; other columns are ignored) or a list of dicts, one value per row."""
        if isinstance(params, pd.DataFrame):
            names = [c for c in params.columns if c in self.space.names]
            params = params[names].to_dict("records")
        records = [{k: _plain(v) for k, v in dict(p).items()} for p in params]
        out = self._client.request("POST", f"{self._path}/add",
                                   json={"params": records, "values": _floats(values)})
        return self._frame(out, True)

    def abandon(self, trial: int) -> dict:
        """Give up a pending trial: later asks no longer treat it as pending."""
        return self._client.request("POST", f"{self._path}/trials/{int(trial)}/abandon")

    def finish(self) -> None:
        """Mark the study finished: its trials train the family's next prior."""
        self.info = self._client.request("POST", f"{self._path}/finish")

    @property
    def best(self) -> tuple[dict, float]:
        """`(dict of raw values, value)` of the best complete trial."""
        t = self._client.request("GET", f"{self._path}/best")
        return dict(t["params"]), float(t["value"])

    @property
    def history(self) -> pd.DataFrame:
        """One row per trial: "trial", the parameters, "value" (NaN while pending), "state"."""
        return self._frame(self._client.request("GET", f"{self._path}/trials"), True)


class Job:
    """A training job on the service."""

    def __init__(self, client: Client, info: dict):
        self._client, self.info = client, info
        self.id: int = info["id"]

    def __getattr__(self, name):
        if name in ("state", "progress", "message", "error", "prior_version", "family"):
            return self.info[name]
        raise AttributeError(name)

    def refresh(self) -> Job:
        self.info = self._client.request("GET", f"/v1/jobs/{self.id}")
        return self

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> Job:
        """Block until the job is done; `JobFailedError` with the job's error if it failed,
        `TimeoutError` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.refresh().info["state"] not in ("done", "failed"):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {self.info['state']} after {timeout} s "
                                   f"({self.info['message']})")
            time.sleep(poll)
        if self.info["state"] == "failed":
            raise JobFailedError(f"job {self.id} failed: {self.info['error']}")
        return self


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _floats(values) -> list[float]:
    if isinstance(values, (pd.Series, pd.DataFrame)):
        values = values.to_numpy().reshape(-1)
    if hasattr(values, "tolist"):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        values = [values]
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InputDataError(f"values must be numbers (got {values!r})") from None
    for i, v in enumerate(out):
        if not math.isfinite(v):
            raise InputDataError(f"values has NaN or inf at position {i}: {v}")
    return out


__all__ = ["Client", "Job", "ServiceError", "Study"]
