"""Errors a client can cause, with the HTTP status that reports them as {statusCode, message, error}."""
from __future__ import annotations

from http import HTTPStatus


class ApiError(Exception):
    status: int = 400

    def __init__(self, message: str | list[str], status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def body(self) -> dict:
        return error_body(self.status, self.message)

    def __reduce__(self):  # keep message and status when Ray pickles the error across processes
        return (type(self), (self.message, self.status))


def error_body(status: int, message: str | list[str]) -> dict:
    return {"statusCode": status, "message": message, "error": HTTPStatus(status).phrase}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Unavailable(ApiError):
    status = 503


class TooManyRequests(ApiError):
    """Past an abuse limit (domain.limits): 429, and `Retry-After` whole seconds at the edge."""

    status = 429

    def __init__(self, message: str | list[str], retry_after: int = 1, status: int | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after

    def __reduce__(self):
        return (type(self), (self.message, self.retry_after, self.status))
