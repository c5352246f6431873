"""The HTTP ingress: the app (built once, with its middleware and error handlers) and the routes under /api.

Each route validates its input, proves who is calling (`deployments.identity`), and hands over to the
service that owns the work (auth, users, events, order reads) through a deployment handle. Every seat
change (holds, orders, cancellations, releases) goes from this replica straight to the category actors
through `SeatDesk`: one hop, coalesced per category. Errors: `deployments.http_errors`; the OpenAPI
document: `deployments.openapi`.
"""
# No `from __future__ import annotations` here: Serve's class-based FastAPI view needs real annotations.
import asyncio
import logging
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import Header, Request
from fastapi.middleware import Middleware
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from ray import serve

from deployments.abuse import Action, EdgeLimits
from deployments.http_errors import call, install_error_handlers
from deployments.identity import Caller, CategoryName, EventId, MaybeCaller, OrderId
from deployments.openapi import TicketingAPI
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
from deployments.views import queue_figures_view
from deployments.waiting_room import QueueDesk
from domain.auth import VerifiedTokens
from storage.catalog_notices import announce, changed_events
from ticketing import settings

log = logging.getLogger(__name__)
QUEUE_KEEPER_SECONDS = 10.0
# A shopping pass from the event's queue (docs/waiting-room.md), needed while the queue is on.
QueuePass = Annotated[str | None, Header(max_length=2000, alias="X-Queue-Pass")]
STATIC = FilePath(__file__).with_name("static")


def make_app() -> TicketingAPI:
    """The FastAPI app with everything but the routes, which the Gateway class below declares.
    Built once at import: `serve.ingress` serves the app it is given when the class is decorated."""
    app = TicketingAPI(
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


app = make_app()


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
        # The JWT guard's verifier: the secret is known only now (deployments.identity reads it).
        app.state.tokens = VerifiedTokens(settings.jwt_secret(FilePath(data_dir)))
        self.seats = SeatDesk(db_url, settings.tunables())
        self.waiting_room = QueueDesk(db_url, data_dir)
        # Abuse limits (deployments.abuse): checked in this replica before any work; user_config tunes them.
        self.limits = EdgeLimits()
        # After a (re)start, categories on sale get their actors up before buyers arrive.
        self.warming = asyncio.get_running_loop().create_task(self._warm_on_sale())
        self.queue_keeper = asyncio.get_running_loop().create_task(self._keep_queues())
        self.db_url = db_url
        self.catalog_follower = asyncio.get_running_loop().create_task(self._follow_catalog())

    async def _warm_on_sale(self) -> None:
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

    async def _follow_catalog(self) -> None:
        """Another replica's organizer request changed an event (storage.catalog_notices): connect to its
        categories' actors and re-read its sale settings now, before buyers arrive."""
        while True:
            try:
                async for event_id in changed_events(self.db_url):
                    asyncio.get_running_loop().create_task(self._catalog_changed(event_id))
            except Exception:
                log.warning("listening for catalog changes failed; listening again", exc_info=True)
            await asyncio.sleep(1.0)

    async def _catalog_changed(self, event_id: int) -> None:
        self.waiting_room.sales.forget(event_id)
        try:
            await self.seats.categories.warm_on_sale(event_id)
            await self.waiting_room.sales.get(event_id)
        except Exception:  # an optimisation: a buyer's request does the same on its own
            log.warning("preparing for the changes of event %s failed", event_id, exc_info=True)

    async def _announce(self, event_id: int) -> None:
        self.waiting_room.sales.forget(event_id)  # this replica sees new sale settings at once
        try:
            await announce(self.seats.engine, event_id)  # and the others within milliseconds
        except Exception:
            log.warning("announcing the change of event %s failed", event_id, exc_info=True)

    async def _warm(self, event: dict) -> dict:
        """Create and load the actors of an event's categories on sale, so no buyer pays for it; every
        other replica does the same on the announcement."""
        await self._announce(event["idEvent"])
        try:
            await self.seats.categories.warm_on_sale(event["idEvent"])
        except Exception:
            log.warning("warming the category actors of event %s failed", event["idEvent"], exc_info=True)
        if event.get("queueEnabled"):  # present only when the event has sale settings
            await self.waiting_room.queues.figures(event["idEvent"])  # starts the queue's clock
        return event

    async def reconfigure(self, config: dict) -> None:
        self.limits.configure(config)
        await self.seats.categories.configure(config)

    # -- the buy path first: routes are matched in order, and these carry a rush --
    @app.post("/api/holds", status_code=201, tags=["holds"])
    async def create_hold(self, body: HoldBody, caller: Caller, request: Request,
                          x_queue_pass: QueuePass = None) -> dict:
        self.limits.check(Action.HOLD, request, account=caller.user_id, cost=body.quantity)
        await self.waiting_room.check_may_shop(caller, body.eventId, x_queue_pass)
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
        self, body: OrderBody, caller: Caller, request: Request,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None, x_queue_pass: QueuePass = None,
    ) -> dict:
        # A purchase without a hold takes seats as a hold does: the same limit, or it would be the way round it.
        self.limits.check(Action.HOLD, request, account=caller.user_id, cost=body.quantity)
        await self.waiting_room.check_may_shop(caller, body.eventId, x_queue_pass)
        return await self.seats.order(caller, body.model_dump(), idempotency_key)

    @app.post("/api/orders/with-lock", status_code=201, tags=["orders"])
    async def create_order_with_lock(
        self, body: OrderWithLockBody, caller: Caller, request: Request,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None, x_queue_pass: QueuePass = None,
    ) -> dict:
        if not body.lockId:  # no hold to confirm: a purchase, which takes seats
            self.limits.check(Action.HOLD, request, account=caller.user_id, cost=body.quantity)
        await self.waiting_room.check_may_shop(caller, body.eventId, x_queue_pass)
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
        return {"service": "ticketing", "status": "active", **await call(self.orders.stats.remote()),
                "queues": await self.waiting_room.stats()}

    @app.get("/live", include_in_schema=False)
    async def live_page(self) -> FileResponse:
        return FileResponse(STATIC / "live.html", media_type="text/html")

    # -- auth & user --
    @app.post("/api/auth/register", status_code=201, tags=["auth"])
    async def register(self, body: RegisterBody, request: Request) -> dict:
        self.limits.check(Action.REGISTER, request, account=body.username)
        return await call(self.auth.register.remote(body.username, body.password, body.role))

    @app.post("/api/auth/login", status_code=201, tags=["auth"])
    async def login(self, body: LoginBody, request: Request) -> dict:
        self.limits.check(Action.LOGIN, request, account=body.username)
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
    async def reserve(self, body: HoldBody, caller: Caller, request: Request, x_queue_pass: QueuePass = None) -> dict:
        """Seed route, now a hold owned by the caller (released by them, or on expiry)."""
        return await self.create_hold(body, caller, request, x_queue_pass)

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

    # -- the waiting room --
    @app.post("/api/events/{event_id}/queue", status_code=201, tags=["queue"])
    async def join_queue(self, event_id: EventId, caller: Caller, request: Request) -> dict:
        """Join the event's queue (again: the same place). While admitted, the answer carries the pass."""
        self.limits.check(Action.QUEUE_JOIN, request, account=caller.user_id)
        return await self.waiting_room.join(caller, event_id)

    @app.get("/api/events/{event_id}/queue", tags=["queue"])
    async def my_turn(self, event_id: EventId, caller: Caller) -> dict:
        return await self.waiting_room.state(caller, event_id)

    @app.get("/api/events/{event_id}/queue/figures", tags=["queue"])
    async def queue_figures(self, event_id: EventId) -> dict:
        return await self.waiting_room.figures(event_id)

    @app.patch("/api/events/{event_id}/queue", tags=["queue"])
    async def control_queue(self, event_id: EventId, body: QueueControlBody, caller: Caller) -> dict:
        """The organizer's live controls: pause or resume admission, change the rate or the cap."""
        event = await call(self.events.control_queue.remote(caller, event_id, body.model_dump(exclude_unset=True)))
        await self._announce(event_id)
        return {**queue_figures_view(await self.waiting_room.queues.figures(event_id)),
                "shoppingMinutes": event.get("shoppingMinutes")}

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

