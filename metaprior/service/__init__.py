"""The prior service: studies in a database, ask/tell over HTTP, priors retrained from the
service's own finished studies.

`Client` is the Python client (`mp.service.Client(url, token=...)`); `metaprior serve` runs the
server (`metaprior.service.app`) over a store (`metaprior.service.db`), with a worker process
for training jobs (`metaprior.service.jobs`). The server side needs the `service` extra
(`pip install metaprior[service]`).
"""

from metaprior.service.client import Client, Job, Study
from metaprior.service.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidRequestError,
    JobFailedError,
    NotFoundError,
    ServerError,
    ServiceError,
    ServiceUnavailableError,
    UnauthorizedError,
)

__all__ = [
    "AlreadyExistsError",
    "Client",
    "ConflictError",
    "InvalidRequestError",
    "Job",
    "JobFailedError",
    "NotFoundError",
    "ServerError",
    "ServiceError",
    "ServiceUnavailableError",
    "Study",
    "UnauthorizedError",
]
