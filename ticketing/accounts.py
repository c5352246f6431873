"""Register and log in through the HTTP API: the one client helper for the demo data, the rush driver
and the tests (a synchronous and an asynchronous httpx client, same requests, same checks).

The account comes back as {id?, username, role, password, token, headers}: `id` when this call
registered it (a 409 "already taken" with `existing_ok` logs in to the existing account instead).
"""
from __future__ import annotations

import uuid

import httpx


def unique(prefix: str = "user") -> str:
    """A username (or name) no other run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _registered(r: httpx.Response, username: str, existing_ok: bool) -> dict:
    if r.status_code == 201:
        return r.json()
    if r.status_code == 409 and existing_ok:  # made earlier (a second demo run, say): log in to it
        return {}
    raise RuntimeError(f"register {username}: {r.status_code} {r.text}")


def _account(registered: dict, login: httpx.Response, username: str, role: str, password: str) -> dict:
    if login.status_code != 201:
        raise RuntimeError(f"login {username}: {login.status_code} {login.text}")
    token = login.json()["token"]
    return {"username": username, "role": role, **registered, "password": password, "token": token,
            "headers": {"Authorization": f"Bearer {token}"}}


def register_and_login(client: httpx.Client, password: str, role: str = "assistant", username: str | None = None,
                       *, existing_ok: bool = False) -> dict:
    """Register `username` (a fresh one if None) with `role`, then log in; the account as above."""
    username = username or unique(role)
    r = client.post("/api/auth/register", json={"username": username, "password": password, "role": role})
    registered = _registered(r, username, existing_ok)
    login = client.post("/api/auth/login", json={"username": username, "password": password})
    return _account(registered, login, username, role, password)


async def register_and_login_async(client: httpx.AsyncClient, password: str, role: str = "assistant",
                                   username: str | None = None, *, existing_ok: bool = False) -> dict:
    """`register_and_login` on an asynchronous client."""
    username = username or unique(role)
    r = await client.post("/api/auth/register", json={"username": username, "password": password, "role": role})
    registered = _registered(r, username, existing_ok)
    login = await client.post("/api/auth/login", json={"username": username, "password": password})
    return _account(registered, login, username, role, password)


def mint_accounts(database_url: str, secret: str, n: int, role: str = "assistant", hours: float = 6) -> list[dict]:
    """`n` accounts inserted straight into the database (one statement), each with a token signed by the
    server's `secret`: for rushes of thousands of buyers, where registering each through argon2 would take
    longer than the rush (logins are benchmarked on their own). They cannot log in (no password)."""
    from sqlalchemy import create_engine, text

    from domain.auth import issue_token
    from storage.database import normalise_url

    prefix = unique(role)
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.begin() as conn:
            rows = conn.execute(
                text("INSERT INTO users (username, password_hash, role) SELECT :p || '_' || g, 'not-a-hash',"
                     " CAST(:r AS user_role) FROM generate_series(1, :n) g RETURNING id, username"),
                {"p": prefix, "r": role, "n": n}).all()
    finally:
        engine.dispose()
    accounts = []
    for user_id, username in sorted(rows):
        token = issue_token(user_id, username, role, secret, int(hours * 3600))
        accounts.append({"id": user_id, "username": username, "role": role, "token": token,
                         "headers": {"Authorization": f"Bearer {token}"}})
    return accounts
