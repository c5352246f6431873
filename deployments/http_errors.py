"""How the HTTP API answers errors: always {statusCode, message, error}, never a stack trace."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import ApiError, Unavailable, error_body

log = logging.getLogger(__name__)
# A part of the system that is away for now (the database, an actor, a replica): worth a retry, so a 503.
AWAY = (OperationalError, InterfaceError, PoolTimeoutError, RayActorError, ActorUnavailableError, GetTimeoutError,
        BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError)


def api_error_response(exc: ApiError) -> JSONResponse:
    """The answer to an ApiError, raised anywhere or answered directly (deployments.shortcuts)."""
    retry_after = getattr(exc, "retry_after", None)  # TooManyRequests: when to come back
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return api_error_response(exc)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Field and reason only: the rejected input (a password, say) is never echoed back.
    messages = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if p != "body")
        messages.append(f"{where}: {err['msg']}" if where else err["msg"])
    return JSONResponse(error_body(400, messages), status_code=400)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "Error"
    if exc.status_code == 404 and message == "Not Found":
        message = f"Cannot {request.method} {request.url.path}"
    return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code)


def is_away(exc: BaseException) -> bool:
    """Did this fail because a part of the system is away for now (retry later), not because of a bug? A
    service's own failure comes back from its replica wrapped in a RayTaskError."""
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    return isinstance(cause, AWAY) or (isinstance(cause, DBAPIError) and cause.connection_invalidated)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_away(exc):
        log.warning("%s %s: %s away (%s)", request.method, request.url.path, type(exc).__name__, exc)
        return api_error_response(Unavailable("Service temporarily unavailable, please retry"))
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body(500, "Internal server error"), status_code=500)


async def call(response):
    """Await a deployment call; an ApiError raised by the service comes back as itself."""
    try:
        return await response
    except RayTaskError as exc:
        if isinstance(exc.cause, ApiError):
            raise exc.cause from None
        raise


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
