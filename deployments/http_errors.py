"""How the HTTP API answers errors: always {statusCode, message, error}, never a stack trace."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import RayTaskError
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import ApiError, error_body

log = logging.getLogger(__name__)


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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
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
