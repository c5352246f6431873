"""How the edge answers what goes wrong (deployments.http_errors), through a real app and handlers."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from ray.exceptions import RayTaskError
from sqlalchemy.exc import OperationalError

from deployments.http_errors import install_error_handlers

DOWN = OperationalError("SELECT 1", {}, Exception("connection to server failed: Connection refused"))
FAILURES = {
    "database": DOWN,
    "database-behind-a-service": RayTaskError("OrdersService.list", "traceback", DOWN),
    "bug": RuntimeError("a bug"),
    "bug-behind-a-service": RayTaskError("OrdersService.list", "traceback", KeyError("x")),
}


def answer(kind: str) -> httpx.Response:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fail")
    async def fail():
        raise FAILURES[kind]

    async def get():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            return await client.get("/fail")
    return asyncio.run(get())


@pytest.mark.parametrize("kind", ["database", "database-behind-a-service"])
def test_a_part_of_the_system_that_is_away_is_a_503_to_retry(kind):
    r = answer(kind)
    assert r.status_code == 503
    assert r.json() == {"statusCode": 503, "message": "Service temporarily unavailable, please retry",
                        "error": "Service Unavailable"}


@pytest.mark.parametrize("kind", ["bug", "bug-behind-a-service"])
def test_a_bug_is_a_500_that_says_nothing_of_it(kind):
    r = answer(kind)
    assert r.status_code == 500
    assert r.json() == {"statusCode": 500, "message": "Internal server error", "error": "Internal Server Error"}
