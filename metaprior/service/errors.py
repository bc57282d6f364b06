"""Errors of the prior service, one per HTTP status, shared by the store, the app and the client.

The store raises them, the app maps each to its status (`STATUS`), and the client raises the
same class for that status, so server-side and client-side code catch the same names.
"""

from __future__ import annotations

from metaprior.errors import MetaPriorError


class ServiceError(MetaPriorError):
    """An error of the prior service. `status` is the HTTP status it maps to; `detail` the
    server's message (a string, or the list of fields of a 422)."""

    status: int = 500

    def __init__(self, detail, status: int | None = None):
        self.detail = detail
        if status is not None:
            self.status = status
        super().__init__(detail if isinstance(detail, str) else f"{detail}")


class UnauthorizedError(ServiceError):
    """401: the request carried no token or a wrong one."""

    status = 401


class NotFoundError(ServiceError, LookupError):
    """404: an unknown family, prior version, study, trial or job."""

    status = 404


class ConflictError(ServiceError):
    """409: a request that contradicts the store, e.g. a different value for a told trial."""

    status = 409


class AlreadyExistsError(ConflictError):
    """409: a family or study of that name exists already (names are unique in a store). The
    client raises it for a 409 whose detail says so."""


class InvalidRequestError(ServiceError, ValueError):
    """422: a request the schema or the space refuses; `detail` names the field or value."""

    status = 422


class ServerError(ServiceError):
    """5xx: the server failed (a bug, or the database is down)."""

    status = 500


class ServiceUnavailableError(ServiceError, ConnectionError):
    """No answer: the server cannot be reached or did not answer within the timeout."""

    status = 0


class JobFailedError(ServiceError):
    """A training job ended in error; `detail` says what went wrong."""

    status = 0


class StoreVersionError(ServiceError):
    """The store was written by a newer metaprior (its schema version is unknown here)."""

    status = 500


def error_for(status: int, detail) -> ServiceError:
    """The client-side error of an HTTP error response."""
    cls = error_for_status(status)
    if cls is ConflictError and isinstance(detail, str) and "exists already" in detail:
        cls = AlreadyExistsError
    return cls(detail, status=status)


def error_for_status(status: int) -> type[ServiceError]:
    """The client-side class of an HTTP error status."""
    if status == 401:
        return UnauthorizedError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError  # refined by detail in `error_for`
    if status == 422:
        return InvalidRequestError
    if status >= 500:
        return ServerError
    return ServiceError
