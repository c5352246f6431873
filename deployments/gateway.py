"""The HTTP ingress: routes under /api, CORS, the JWT guard and error mapping.

Each route validates its input, proves who is calling, and hands over to the service that owns the
work (auth, users, events, order reads) through a deployment handle. Every seat change (holds, orders,
cancellations, releases) goes from this replica straight to the category actors through `SeatDesk`:
one hop, coalesced per category.
"""
# No `from __future__ import annotations` here: Serve's class-based FastAPI view needs real annotations.
import asyncio
import logging
from datetime import datetime, timezone
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from ray import serve
from ray.exceptions import RayTaskError
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.schemas import (
    EventCreateBody,
    EventUpdateBody,
    HoldBody,
    LoginBody,
    OrderBody,
    OrderWithLockBody,
    RegisterBody,
    ReleaseBody,
)
from deployments.seats import SeatDesk
from domain.auth import Principal, VerifiedTokens, token_from_header
from domain.errors import ApiError, error_body
from domain.events import on_sale_categories
from domain.vocabulary import MAX_ID
from ticketing import settings

log = logging.getLogger(__name__)
STATIC = FilePath(__file__).with_name("static")


# ---- the OpenAPI document ----------------------------------------------------------------------------

ERROR_SCHEMA = {
    "type": "object",
    "required": ["statusCode", "message", "error"],
    "properties": {
        "statusCode": {"type": "integer"},
        "message": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "error": {"type": "string"},
    },
}


def api_routes(routes):
    """Every APIRoute below `routes`. Serve's class-based view re-mounts our routes through
    `include_router`, which FastAPI >= 0.137 keeps nested (`original_router`) instead of flattening."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif getattr(route, "original_router", None) is not None:
            yield from api_routes(route.original_router.routes)


def _guarded(route: APIRoute) -> bool:
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
    answer 401, and health answers 503 when the database is not usable. A method, not an instance
    attribute: `serve.ingress` serves a pickled copy of the app taken when the class is decorated."""

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
                    if _guarded(route):
                        responses["401"] = _error("Missing or invalid token")
            health = doc["paths"].get("/api/health", {}).get("get")
            if health is not None:
                health["responses"]["503"] = {"description": "Database unreachable or not migrated"}
            self.openapi_schema = doc
        return self.openapi_schema


app = TicketingAPI(
    title="Ticketing API",
    version="1.0.0",
    description="High-demand ticket on-sales: events, holds (locks) and orders. "
    "Errors are always {statusCode, message, error}.",
    openapi_url="/api/openapi.json",
    docs_url="/api/docs",
    redoc_url=None,
)


# ---- errors --------------------------------------------------------------------------------------


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Field and reason only: the rejected input (a password, say) is never echoed back.
    messages = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if p != "body")
        messages.append(f"{where}: {err['msg']}" if where else err["msg"])
    return JSONResponse(error_body(400, messages), status_code=400)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "Error"
    if exc.status_code == 404 and message == "Not Found":
        message = f"Cannot {request.method} {request.url.path}"
    return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code)


@app.exception_handler(Exception)
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


# ---- identity --------------------------------------------------------------------------------------


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool,
# a thread hop per request that cost the hold path a third of its throughput.
async def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return request.app.state.tokens.verify(token_from_header(authorization))


async def maybe_principal(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal | None:
    """For public routes that show more to the right caller; a bad token means anonymous."""
    try:
        return await principal(request, authorization)
    except ApiError:
        return None


Caller = Annotated[Principal, Depends(principal)]
MaybeCaller = Annotated[Principal | None, Depends(maybe_principal)]
EventId = Annotated[int, Path(ge=1, le=MAX_ID)]
# An event category is at most 100 characters and PostgreSQL text cannot hold NUL (it answered 500).
CategoryName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]
OrderId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def health_status(report: dict) -> tuple[dict, int]:
    """The storage health report → (body, HTTP status): 200 only when reachable and migrated, else 503."""
    ok = report.get("database") == "reachable" and report.get("migrated") is True
    return {"status": "ok" if ok else "unavailable", **report}, 200 if ok else 503


# ---- the deployment --------------------------------------------------------------------------------


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512)
@serve.ingress(app)
class Gateway:
    def __init__(self, auth, users, events, orders, db_url: str, data_dir: str) -> None:
        self.auth, self.users, self.events, self.orders = auth, users, events, orders
        app.state.tokens = VerifiedTokens(settings.jwt_secret(FilePath(data_dir)))
        self.seats = SeatDesk(db_url, settings.tunables())
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins(),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
            allow_headers=["Content-Type", "Authorization", "Accept", "Idempotency-Key"],
        )
        # After a (re)start, categories on sale get their actors up before buyers arrive.
        self.warming = asyncio.get_running_loop().create_task(self._warm_on_sale())

    async def _warm_on_sale(self) -> None:
        try:
            count = await self.seats.categories.warm_on_sale()
            log.info("warmed the actors of %d categories on sale", count)
        except Exception:  # warming is an optimisation: a cold category still works
            log.warning("warming the category actors failed", exc_info=True)

    async def _warm(self, event: dict) -> dict:
        """Create and load the actors of an event's categories on sale, so no buyer pays for it."""
        try:
            await self.seats.categories.warm(event["idEvent"], on_sale_categories(event, datetime.now(timezone.utc)))
        except Exception:
            log.warning("warming the category actors of event %s failed", event["idEvent"], exc_info=True)
        return event

    async def reconfigure(self, config: dict) -> None:
        await self.seats.categories.configure(config)

    # -- the buy path first: routes are matched in order, and these carry a rush --
    @app.post("/api/holds", status_code=201, tags=["holds"])
    async def create_hold(self, body: HoldBody, caller: Caller) -> dict:
        return await self.seats.hold(caller, body.eventId, body.categoryId, body.quantity)

    @app.get("/api/holds", tags=["holds"])
    async def my_holds(self, caller: Caller) -> list[dict]:
        return await call(self.orders.my_holds.remote(caller))

    @app.delete("/api/holds/{lock_id}", tags=["holds"])
    async def release_hold(self, lock_id: str, caller: Caller) -> dict:
        return await self.seats.release_hold(caller, lock_id)

    # -- orders (fixed paths before /{id}) --
    @app.post("/api/orders", status_code=201, tags=["orders"])
    async def create_order(
        self, body: OrderBody, caller: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> dict:
        return await self.seats.order(caller, body.model_dump(), idempotency_key)

    @app.post("/api/orders/with-lock", status_code=201, tags=["orders"])
    async def create_order_with_lock(
        self, body: OrderWithLockBody, caller: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> dict:
        return await self.seats.order(caller, body.model_dump(), idempotency_key)

    # -- misc --
    @app.get("/api", tags=["misc"])
    async def hello(self) -> dict:
        return {"message": "Hello API"}

    @app.get("/api/health", tags=["misc"])
    async def health(self) -> JSONResponse:
        body, status = health_status(await call(self.events.health.remote()))
        return JSONResponse(body, status_code=status)

    @app.get("/api/stats", tags=["misc"])
    async def stats(self) -> dict:
        return {"service": "ticketing", "status": "active", **await call(self.orders.stats.remote())}

    @app.get("/live", include_in_schema=False)
    async def live_page(self) -> FileResponse:
        return FileResponse(STATIC / "live.html", media_type="text/html")

    # -- auth & user --
    @app.post("/api/auth/register", status_code=201, tags=["auth"])
    async def register(self, body: RegisterBody) -> dict:
        return await call(self.auth.register.remote(body.username, body.password, body.role))

    @app.post("/api/auth/login", status_code=201, tags=["auth"])
    async def login(self, body: LoginBody) -> dict:
        return await call(self.auth.login.remote(body.username, body.password))

    @app.get("/api/user", tags=["user"])
    async def profile(self, caller: Caller) -> dict:
        return await call(self.users.profile.remote(caller))

    # -- events (fixed paths before /{id}) --
    @app.post("/api/events", status_code=201, tags=["events"])
    async def create_event(self, body: EventCreateBody, caller: Caller) -> dict:
        return await self._warm(await call(self.events.create.remote(caller, body.model_dump())))

    @app.get("/api/events", tags=["events"])
    async def list_events(self) -> list[dict]:
        return await call(self.events.list.remote())

    @app.get("/api/events/upcoming", tags=["events"])
    async def upcoming_events(self) -> list[dict]:
        return await call(self.events.list.remote(upcoming=True))

    @app.get("/api/events/category/{category}", tags=["events"])
    async def events_by_category(self, category: CategoryName) -> list[dict]:
        return await call(self.events.list.remote(category=category))

    @app.post("/api/events/tickets/reserve", status_code=201, tags=["holds"])
    async def reserve(self, body: HoldBody, caller: Caller) -> dict:
        """Seed route, now a hold owned by the caller (released by them, or on expiry)."""
        return await self.create_hold(body, caller)

    @app.post("/api/events/tickets/release", status_code=201, tags=["holds"])
    async def release(self, body: ReleaseBody, caller: Caller) -> dict:
        """Seed route: releases the caller's own hold in the category, never anyone else's seats."""
        return await self.seats.release_in_category(caller, body.categoryId, body.eventId)

    @app.get("/api/events/{event_id}", tags=["events"])
    async def get_event(self, event_id: EventId, viewer: MaybeCaller) -> dict:
        return await call(self.events.get.remote(event_id, viewer))

    @app.put("/api/events/{event_id}", tags=["events"])
    async def update_event(self, event_id: EventId, body: EventUpdateBody, caller: Caller) -> dict:
        return await self._warm(
            await call(self.events.update.remote(caller, event_id, body.model_dump(exclude_unset=True))))

    @app.delete("/api/events/{event_id}", tags=["events"])
    async def delete_event(self, event_id: EventId, caller: Caller) -> bool:
        return await call(self.events.delete.remote(caller, event_id))

    @app.get("/api/events/{event_id}/tickets", tags=["events"])
    async def event_tickets(self, event_id: EventId, viewer: MaybeCaller) -> list[dict]:
        return await call(self.events.tickets.remote(event_id, viewer))

    @app.get("/api/orders", tags=["orders"])
    async def my_orders(self, caller: Caller) -> list[dict]:
        return await call(self.orders.mine.remote(caller))

    @app.get("/api/orders/all", tags=["orders"])
    async def orders_of_my_events(self, caller: Caller) -> list[dict]:
        return await call(self.orders.of_my_events.remote(caller))

    @app.get("/api/orders/event/{event_id}", tags=["orders"])
    async def orders_of_event(self, event_id: EventId, caller: Caller) -> list[dict]:
        return await call(self.orders.of_event.remote(caller, event_id))

    @app.get("/api/orders/{order_id}", tags=["orders"])
    async def get_order(self, order_id: OrderId, caller: Caller) -> dict:
        return await call(self.orders.get.remote(caller, order_id))

    @app.post("/api/orders/{order_id}/cancel", status_code=201, tags=["orders"])
    async def cancel_order(self, order_id: OrderId, caller: Caller) -> dict:
        return await self.seats.cancel(caller, order_id)

