"""Auth service: registration and login. Passwords are hashed here and never leave this replica."""
from __future__ import annotations

import asyncio
from pathlib import Path

from ray import serve

from domain.auth import hash_password, issue_token, verify_or_burn
from domain.errors import Conflict, Unauthorized
from storage.database import make_engine
from storage.users_store import UsernameTaken, create_user, find_by_username
from ticketing import settings


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
class AuthService:
    def __init__(self, db_url: str, data_dir: str) -> None:
        self.engine = make_engine(db_url, pool_size=2)
        self.secret = settings.jwt_secret(Path(data_dir))
        self.ttl = settings.jwt_ttl_seconds()

    async def register(self, username: str, password: str, role: str) -> dict:
        try:
            # argon2 takes tens of milliseconds of CPU: off the event loop, so other requests keep flowing.
            password_hash = await asyncio.to_thread(hash_password, password)
            user = await create_user(self.engine, username, password_hash, role)
        except UsernameTaken:
            raise Conflict("Username already exists") from None
        return {"id": user.id, "username": user.username, "role": user.role.value}

    async def login(self, username: str, password: str) -> dict:
        user = await find_by_username(self.engine, username)
        if not await asyncio.to_thread(verify_or_burn, password, user.password_hash if user else None):
            raise Unauthorized("Invalid Credentials")
        return {"token": issue_token(user.id, user.username, user.role.value, self.secret, self.ttl)}
