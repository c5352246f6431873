"""The OpenAPI document of the HTTP API, made to say what the handlers really answer."""
# No `from __future__ import annotations`: FastAPI reads the annotations of the app it documents.
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from deployments.identity import principal

ERROR_SCHEMA = {
    "type": "object",
    "required": ["statusCode", "message", "error"],
    "properties": {
        "statusCode": {"type": "integer"},
        "message": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "error": {"type": "string"},
    },
}


# `responses=RATE_LIMITED` on a route whose handler checks an abuse limit (deployments.abuse).
RATE_LIMITED = {429: {
    "description": "Past an abuse limit; nothing changed. Send again after Retry-After seconds",
    "headers": {"Retry-After": {"description": "Whole seconds to wait", "schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}}


def api_routes(routes):
    """Every APIRoute below `routes`. The Gateway adds its routes through `include_router`, which
    FastAPI >= 0.137 keeps nested (`original_router`) instead of flattening."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif getattr(route, "original_router", None) is not None:
            yield from api_routes(route.original_router.routes)


def guarded(route: APIRoute) -> bool:
    """Does the route require a valid token (the `principal` dependency, not the optional one)?"""
    pending = list(route.dependant.dependencies)
    while pending:
        dep = pending.pop()
        if dep.call is principal:
            return True
        pending.extend(dep.dependencies)
    return False


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


class TicketingAPI(FastAPI):
    """A FastAPI app whose OpenAPI document says what the handlers really answer: bad input is 400 with
    {statusCode, message, error} (FastAPI alone documents 422 with its own shape), guarded routes may
    answer 401, rate-limited routes 429 (they say so with `responses=RATE_LIMITED`), and health answers
    503 when the database is not usable."""

    def openapi(self) -> dict:
        if self.openapi_schema is None:
            doc = get_openapi(title=self.title, version=self.version, description=self.description,
                              routes=self.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas["ErrorBody"] = ERROR_SCHEMA
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            for route in api_routes(self.routes):
                if not route.include_in_schema:
                    continue
                for method in route.methods:
                    responses = doc["paths"][route.path][method.lower()]["responses"]
                    if responses.pop("422", None) is not None:
                        responses["400"] = _error("Bad input")
                    if guarded(route):
                        responses["401"] = _error("Missing or invalid token")
            health = doc["paths"].get("/api/health", {}).get("get")
            if health is not None:
                health["responses"]["503"] = {"description": "Database unreachable or not migrated"}
            self.openapi_schema = doc
        return self.openapi_schema
