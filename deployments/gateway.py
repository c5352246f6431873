"""The HTTP ingress: the Gateway deployment, its app (middleware and error handlers) and the routes under /api.

Each route validates its input, proves who is calling (`deployments.identity`), and hands over to the
service that owns the work (auth, users, events, order reads) through a deployment handle. Every seat
change (holds, orders, cancellations, releases) goes from this replica straight to the category actors
through `SeatDesk`: one hop, coalesced per category. Errors: `deployments.http_errors`; the OpenAPI
document: `deployments.openapi`.

Built like the realtime ingresses: `@serve.ingress()` with no app, and each replica builds its own in
`__serve_build_asgi_app__` once constructed, with the routes (`routes`) bound to the replica.
"""
# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations at run time.
import asyncio
import logging
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.middleware import Middleware
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from ray import serve
from starlette.types import ASGIApp

from deployments.abuse import Action, EdgeLimits
from deployments.http_errors import call, install_error_handlers
from deployments.identity import Caller, CategoryName, EventId, MaybeCaller, OrderId, PageLimit, PageOffset
from deployments.openapi import RATE_LIMITED, TicketingAPI
from deployments.schemas import (
    EventCreateBody,
    EventUpdateBody,
    HoldBody,
    LoginBody,
    OrderBody,
    OrderWithLockBody,
    QueueControlBody,
    RegisterBody,
    ReleaseBody,
)
from deployments.seats import SeatDesk
from deployments.shortcuts import FastLane, Shortcut, shortcuts
from deployments.views import queue_figures_view
from deployments.waiting_room import QueueDesk
from domain.auth import Principal, VerifiedTokens
from domain.orders import Page
from storage import catalog_notices
from ticketing import settings

log = logging.getLogger(__name__)
QUEUE_KEEPER_SECONDS = 10.0
# A shopping pass from the event's queue (docs/waiting-room.md), needed while the queue is on.
QueuePass = Annotated[str | None, Header(max_length=2000, alias="X-Queue-Pass")]
STATIC = FilePath(__file__).with_name("static")
# The routes a rush hits, served in their common case by `deployments.shortcuts` (FastAPI's per-request
# work cost more CPU than the hold or the order itself).
RUSH_ROUTES = {("POST", "/api/holds"), ("POST", "/api/orders"), ("POST", "/api/orders/with-lock"),
               ("POST", "/api/events/tickets/reserve")}


class GatewayAPI(TicketingAPI):
    """The Gateway's app: the rush routes' shortcuts (`fast_lane`) in front of all its middleware."""

    fast_lane: dict[tuple[str, str], Shortcut] = {}

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return FastLane(stack, self.fast_lane, self.exception_handlers) if self.fast_lane else stack


def make_app() -> GatewayAPI:
    """The FastAPI app with everything but the routes (`routes`) and the JWT guard's verifier, which
    the Gateway adds to the app it builds."""
    app = GatewayAPI(
        title="Ticketing API",
        version="1.0.0",
        description="High-demand ticket on-sales: events, holds (locks) and orders. "
        "Errors are always {statusCode, message, error}.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        middleware=[Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins(),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
            allow_headers=["Content-Type", "Authorization", "Accept", "Idempotency-Key", "X-Queue-Pass"],
        )],
    )
    install_error_handlers(app)
    return app


def build_app(gateway, tokens: VerifiedTokens | None, *, with_shortcuts: bool = True) -> TicketingAPI:
    """The app a Gateway replica serves: `make_app()`, the JWT guard's verifier on its state, the routes
    under /api bound to `gateway`, and in front of them the rush routes' shortcuts (`with_shortcuts`)."""
    app = make_app()
    app.state.tokens = tokens
    router = routes(gateway)
    if with_shortcuts:
        app.fast_lane = shortcuts(router.routes, RUSH_ROUTES)
    app.include_router(router)
    return app


def health_status(report: dict) -> tuple[dict, int]:
    """The storage health report → (body, HTTP status): 200 only when reachable and migrated, else 503."""
    ok = report.get("database") == "reachable" and report.get("migrated") is True
    return {"status": "ok" if ok else "unavailable", **report}, 200 if ok else 503


# ---- the deployment --------------------------------------------------------------------------------


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512)
@serve.ingress()
class Gateway:
    def __init__(self, auth, users, events, orders, db_url: str, data_dir: str) -> None:
        self.auth, self.users, self.events, self.orders = auth, users, events, orders
        # The JWT guard's verifier: the secret is known only now (deployments.identity reads it).
        self.tokens = VerifiedTokens(settings.jwt_secret(FilePath(data_dir)))
        self.seats = SeatDesk(db_url, settings.tunables())
        self.waiting_room = QueueDesk(db_url, data_dir)
        # Abuse limits (deployments.abuse): checked in this replica before any work; user_config tunes them.
        self.limits = EdgeLimits()
        # After a (re)start, categories on sale get their actors up before buyers arrive.
        self.warming = asyncio.get_running_loop().create_task(self._warm_on_sale())
        self.queue_keeper = asyncio.get_running_loop().create_task(self._keep_queues())
        self.catalog_follower = asyncio.get_running_loop().create_task(
            self.waiting_room.follow_catalog(db_url, self._catalog_changed))

    async def _warm_on_sale(self) -> None:
        if settings.actor_idle_exit_seconds() > 0:
            # Idle actors end on this system (a node with far more categories than it sells at once):
            # starting every category on sale would start them all at once only to end them again, unsold.
            log.info("idle category actors exit: not warming every category on sale at start")
            return
        try:
            count = await self.seats.categories.warm_on_sale()
            log.info("warmed the actors of %d categories on sale", count)
        except Exception:  # warming is an optimisation: a cold category still works
            log.warning("warming the category actors failed", exc_info=True)

    async def _keep_queues(self) -> None:
        """Queues admit on their own clock, so they must run without a caller: started now (not after the
        category actors, which may be thousands), and looked after every QUEUE_KEEPER_SECONDS (a queue
        actor that died for good is started again)."""
        while True:
            try:
                count = await self.waiting_room.queues.warm_queued()
                log.debug("the queues of %d events are running", count)
            except Exception:
                log.warning("starting the queue actors failed", exc_info=True)
            await asyncio.sleep(QUEUE_KEEPER_SECONDS)

    async def _catalog_changed(self, event_id: int) -> None:
        """Another replica's organizer request changed an event (`QueueDesk.follow_catalog` has dropped its
        cached settings): connect to its categories' actors and re-read its settings now, before buyers come."""
        try:
            await self.seats.categories.warm_on_sale(event_id)
            await self.waiting_room.sales.get(event_id)
        except Exception:  # an optimisation: a buyer's request does the same on its own
            log.warning("preparing for the changes of event %s failed", event_id, exc_info=True)

    async def announce(self, event_id: int) -> None:
        self.waiting_room.sales.forget(event_id)  # this replica sees new sale settings at once
        try:
            await catalog_notices.announce(self.seats.engine, event_id)  # and the others within milliseconds
        except Exception:
            log.warning("announcing the change of event %s failed", event_id, exc_info=True)

    async def warm(self, event: dict) -> dict:
        """Create and load the actors of an event's categories on sale, so no buyer pays for it; every
        other replica does the same on the announcement."""
        await self.announce(event["idEvent"])
        try:
            await self.seats.categories.warm_on_sale(event["idEvent"])
        except Exception:
            log.warning("warming the category actors of event %s failed", event["idEvent"], exc_info=True)
        if event.get("queueEnabled"):  # present only when the event has sale settings
            try:
                await self.waiting_room.queues.figures(event["idEvent"])  # starts the queue's clock
            except Exception:
                # The event is saved: a 503 now would have the organizer create it twice. The queue keeper
                # (_keep_queues) starts the queue within QUEUE_KEEPER_SECONDS.
                log.warning("starting the queue of event %s failed", event["idEvent"], exc_info=True)
        return event

    async def reconfigure(self, config: dict) -> None:
        self.limits.configure(config)
        await self.seats.categories.configure(config)

    def __serve_build_asgi_app__(self) -> TicketingAPI:
        """The app this replica serves (Serve calls this once the replica is constructed): the JWT
        guard's verifier on its state, and the routes, bound to this replica, the rush routes' shortcuts in front."""
        return build_app(self, self.tokens)


# ---- the routes --------------------------------------------------------------------------------------


def routes(gateway) -> APIRouter:
    """The routes under /api (and the live page), each a closure over `gateway`, the Gateway replica
    that serves them. Building them calls nothing on it."""
    router = APIRouter()

    # -- the buy path first: routes are matched in order, and these carry a rush --
    @router.post("/api/holds", status_code=201, tags=["holds"], responses=RATE_LIMITED)
    async def create_hold(body: HoldBody, caller: Caller, request: Request, x_queue_pass: QueuePass = None) -> dict:
        gateway.limits.check(Action.HOLD, request, account=caller.user_id, cost=body.quantity)
        await gateway.waiting_room.check_may_shop(caller, body.eventId, x_queue_pass)
        return await gateway.seats.hold(caller, body.eventId, body.categoryId, body.quantity)

    @router.get("/api/holds", tags=["holds"])
    async def my_holds(caller: Caller) -> list[dict]:
        return await call(gateway.orders.my_holds.remote(caller))

    @router.delete("/api/holds/{lock_id}", tags=["holds"])
    async def release_hold(lock_id: str, caller: Caller) -> dict:
        return await gateway.seats.release_hold(caller, lock_id)

    # -- orders (fixed paths before /{id}) --
    async def place_order(caller: Principal, body: dict, idempotency_key: str | None, queue_pass: str | None) -> dict:
        # A retry of an order that exists gets that order, even once the buyer's queue pass has expired.
        if (replayed := await gateway.seats.replay(caller, body, idempotency_key)) is not None:
            return replayed
        await gateway.waiting_room.check_may_shop(caller, body["eventId"], queue_pass)
        return await gateway.seats.order(caller, body, idempotency_key)

    @router.post("/api/orders", status_code=201, tags=["orders"], responses=RATE_LIMITED)
    async def create_order(
        body: OrderBody, caller: Caller, request: Request,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None, x_queue_pass: QueuePass = None,
    ) -> dict:
        # A purchase without a hold takes seats as a hold does: the same limit, or it would be the way round it.
        gateway.limits.check(Action.HOLD, request, account=caller.user_id, cost=body.quantity)
        return await place_order(caller, body.model_dump(), idempotency_key, x_queue_pass)

    @router.post("/api/orders/with-lock", status_code=201, tags=["orders"], responses=RATE_LIMITED)
    async def create_order_with_lock(
        body: OrderWithLockBody, caller: Caller, request: Request,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None, x_queue_pass: QueuePass = None,
    ) -> dict:
        if not body.lockId:  # no hold to confirm: a purchase, which takes seats
            gateway.limits.check(Action.HOLD, request, account=caller.user_id, cost=body.quantity)
        return await place_order(caller, body.model_dump(), idempotency_key, x_queue_pass)

    # -- misc --
    @router.get("/api", tags=["misc"])
    async def hello() -> dict:
        return {"message": "Hello API"}

    @router.get("/api/health", tags=["misc"])
    async def health() -> JSONResponse:
        body, status = health_status(await call(gateway.events.health.remote()))
        return JSONResponse(body, status_code=status)

    @router.get("/api/stats", tags=["misc"])
    async def stats() -> dict:
        return {"service": "ticketing", "status": "active", **await call(gateway.orders.stats.remote()),
                "queues": await gateway.waiting_room.stats()}

    @router.get("/live", include_in_schema=False)
    async def live_page() -> FileResponse:
        return FileResponse(STATIC / "live.html", media_type="text/html")

    # -- auth & user --
    @router.post("/api/auth/register", status_code=201, tags=["auth"], responses=RATE_LIMITED)
    async def register(body: RegisterBody, request: Request) -> dict:
        gateway.limits.check(Action.REGISTER, request, account=body.username)
        return await call(gateway.auth.register.remote(body.username, body.password, body.role))

    @router.post("/api/auth/login", status_code=201, tags=["auth"], responses=RATE_LIMITED)
    async def login(body: LoginBody, request: Request) -> dict:
        gateway.limits.check(Action.LOGIN, request, account=body.username)
        return await call(gateway.auth.login.remote(body.username, body.password))

    @router.get("/api/user", tags=["user"])
    async def profile(caller: Caller) -> dict:
        return await call(gateway.users.profile.remote(caller))

    # -- events (fixed paths before /{id}) --
    @router.post("/api/events", status_code=201, tags=["events"])
    async def create_event(body: EventCreateBody, caller: Caller) -> dict:
        return await gateway.warm(await call(gateway.events.create.remote(caller, body.model_dump())))

    @router.get("/api/events", tags=["events"])
    async def list_events() -> list[dict]:
        return await call(gateway.events.list.remote())

    @router.get("/api/events/upcoming", tags=["events"])
    async def upcoming_events() -> list[dict]:
        return await call(gateway.events.list.remote(upcoming=True))

    @router.get("/api/events/category/{category}", tags=["events"])
    async def events_by_category(category: CategoryName) -> list[dict]:
        return await call(gateway.events.list.remote(category=category))

    @router.post("/api/events/tickets/reserve", status_code=201, tags=["holds"], responses=RATE_LIMITED)
    async def reserve(body: HoldBody, caller: Caller, request: Request, x_queue_pass: QueuePass = None) -> dict:
        """Seed route, now a hold owned by the caller (released by them, or on expiry)."""
        return await create_hold(body, caller, request, x_queue_pass)

    @router.post("/api/events/tickets/release", status_code=201, tags=["holds"])
    async def release(body: ReleaseBody, caller: Caller) -> dict:
        """Seed route: releases the caller's own hold in the category, never anyone else's seats."""
        return await gateway.seats.release_in_category(caller, body.categoryId, body.eventId)

    @router.get("/api/events/{event_id}", tags=["events"])
    async def get_event(event_id: EventId, viewer: MaybeCaller) -> dict:
        return await call(gateway.events.get.remote(event_id, viewer))

    @router.put("/api/events/{event_id}", tags=["events"])
    async def update_event(event_id: EventId, body: EventUpdateBody, caller: Caller) -> dict:
        return await gateway.warm(
            await call(gateway.events.update.remote(caller, event_id, body.model_dump(exclude_unset=True))))

    @router.delete("/api/events/{event_id}", tags=["events"])
    async def delete_event(event_id: EventId, caller: Caller) -> bool:
        return await call(gateway.events.delete.remote(caller, event_id))

    # -- the waiting room --
    @router.post("/api/events/{event_id}/queue", status_code=201, tags=["queue"], responses=RATE_LIMITED)
    async def join_queue(event_id: EventId, caller: Caller, request: Request) -> dict:
        """Join the event's queue (again: the same place). While admitted, the answer carries the pass."""
        gateway.limits.check(Action.QUEUE_JOIN, request, account=caller.user_id)
        return await gateway.waiting_room.join(caller, event_id)

    @router.get("/api/events/{event_id}/queue", tags=["queue"])
    async def my_turn(event_id: EventId, caller: Caller) -> dict:
        return await gateway.waiting_room.state(caller, event_id)

    @router.get("/api/events/{event_id}/queue/figures", tags=["queue"])
    async def queue_figures(event_id: EventId) -> dict:
        return await gateway.waiting_room.figures(event_id)

    @router.patch("/api/events/{event_id}/queue", tags=["queue"])
    async def control_queue(event_id: EventId, body: QueueControlBody, caller: Caller) -> dict:
        """The organizer's live controls: pause or resume admission, change the rate or the cap."""
        event = await call(gateway.events.control_queue.remote(caller, event_id, body.model_dump(exclude_unset=True)))
        await gateway.announce(event_id)
        return {**queue_figures_view(await gateway.waiting_room.queues.figures(event_id)),
                "shoppingMinutes": event.get("shoppingMinutes")}

    @router.get("/api/events/{event_id}/tickets", tags=["events"])
    async def event_tickets(event_id: EventId, viewer: MaybeCaller) -> list[dict]:
        return await call(gateway.events.tickets.remote(event_id, viewer))

    @router.get("/api/orders", tags=["orders"])
    async def my_orders(caller: Caller, limit: PageLimit = None, offset: PageOffset = 0) -> list[dict]:
        return await call(gateway.orders.mine.remote(caller, Page(limit, offset)))

    @router.get("/api/orders/all", tags=["orders"])
    async def orders_of_my_events(caller: Caller, limit: PageLimit = None, offset: PageOffset = 0) -> list[dict]:
        return await call(gateway.orders.of_my_events.remote(caller, Page(limit, offset)))

    @router.get("/api/orders/event/{event_id}", tags=["orders"])
    async def orders_of_event(event_id: EventId, caller: Caller, limit: PageLimit = None,
                              offset: PageOffset = 0) -> list[dict]:
        return await call(gateway.orders.of_event.remote(caller, event_id, Page(limit, offset)))

    @router.get("/api/orders/{order_id}", tags=["orders"])
    async def get_order(order_id: OrderId, caller: Caller) -> dict:
        return await call(gateway.orders.get.remote(caller, order_id))

    @router.post("/api/orders/{order_id}/cancel", status_code=201, tags=["orders"])
    async def cancel_order(order_id: OrderId, caller: Caller) -> dict:
        return await gateway.seats.cancel(caller, order_id)

    return router
