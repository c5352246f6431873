"""Users service: the caller's profile."""
from __future__ import annotations

from ray import serve

from domain.auth import Principal
from domain.errors import NotFound
from storage.database import make_engine
from storage.users_store import find_by_id


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
class UsersService:
    def __init__(self, db_url: str) -> None:
        self.engine = make_engine(db_url, pool_size=2)

    async def profile(self, principal: Principal) -> dict:
        user = await find_by_id(self.engine, principal.user_id)
        if user is None:
            raise NotFound("User not found")
        return {"id": user.id, "username": user.username, "role": user.role.value}
