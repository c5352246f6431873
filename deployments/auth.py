"""Auth service: registration and login. Passwords are hashed here and never leave this replica."""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from ray import serve

from domain.auth import Argon2Params, PasswordHasher, issue_token
from domain.errors import Conflict, Unauthorized
from storage.database import make_engine
from storage.users_store import (
    UsernameTaken,
    create_user,
    find_by_username,
    update_password_hash,
)
from ticketing import settings

logger = logging.getLogger("ray.serve")


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
class AuthService:
    def __init__(self, db_url: str, data_dir: str) -> None:
        self.engine = make_engine(db_url, pool_size=2)
        self.secret = settings.jwt_secret(Path(data_dir))
        self.ttl = settings.jwt_ttl_seconds()
        hashing = settings.password_hashing()
        started = time.perf_counter()
        self.hasher = PasswordHasher(Argon2Params(hashing.memory_kib, hashing.time_cost, hashing.parallelism))
        # Making the hasher makes one hash: what a login costs this host, for operators sizing a login
        # rush (docs/operations.md, "Logins: argon2id on libsodium").
        logger.info("argon2id m=%d KiB t=%d p=%d: %.0f ms per hash here, %d hashing threads",
                    hashing.memory_kib, hashing.time_cost, hashing.parallelism,
                    (time.perf_counter() - started) * 1e3, hashing.thread_count())
        # argon2 is tens of milliseconds of CPU per call and releases the GIL: it runs in this pool, off
        # the event loop, so other requests keep flowing, with one thread per core so that concurrent
        # hashes use every core. The bound also bounds memory (memory_kib per hash in progress); requests
        # past it wait in the pool's queue, in arrival order.
        self.pool = ThreadPoolExecutor(max_workers=hashing.thread_count(), thread_name_prefix="argon2")

    async def _hashing(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, *args))

    async def register(self, username: str, password: str, role: str) -> dict:
        try:
            password_hash = await self._hashing(self.hasher.hash, password)
            user = await create_user(self.engine, username, password_hash, role)
        except UsernameTaken:
            raise Conflict("Username already exists") from None
        return {"id": user.id, "username": user.username, "role": user.role.value}

    async def login(self, username: str, password: str) -> dict:
        user = await find_by_username(self.engine, username)
        stored = user.password_hash if user else None
        valid, new_hash = await self._hashing(self.hasher.verify_and_update, password, stored)
        if not valid:
            raise Unauthorized("Invalid Credentials")
        if new_hash is not None:
            # The stored hash has other parameters (older defaults, or settings changed): upgrade it now
            # that we know the password. A failure here must not refuse a valid login.
            try:
                await update_password_hash(self.engine, user.id, stored, new_hash)
            except Exception:
                logger.warning("could not upgrade the password hash of user %s", user.id, exc_info=True)
        return {"token": issue_token(user.id, user.username, user.role.value, self.secret, self.ttl)}
