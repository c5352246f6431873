"""Users table access."""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.vocabulary import Role
from storage.models import User


class UsernameTaken(Exception):
    pass


async def create_user(engine: AsyncEngine, username: str, password_hash: str, role: str) -> User:
    user = User(username=username, password_hash=password_hash, role=Role(role))
    async with engine.begin() as conn:
        try:
            row = (
                await conn.execute(
                    User.__table__.insert()
                    .values(username=username, password_hash=password_hash, role=Role(role))
                    .returning(User.id, User.created_at)
                )
            ).one()
        except IntegrityError as exc:
            raise UsernameTaken(username) from exc
    user.id, user.created_at = row
    return user


async def update_password_hash(engine: AsyncEngine, user_id: int, old_hash: str, new_hash: str) -> bool:
    """Replace a user's password hash, only if it is still `old_hash` (a concurrent change wins).
    True if the row was updated."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(User.__table__)
            .where(User.id == user_id, User.password_hash == old_hash)
            .values(password_hash=new_hash)
        )
    return result.rowcount == 1


async def find_by_username(engine: AsyncEngine, username: str) -> User | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(User.__table__).where(User.username == username))).first()
    return _user(row)


async def find_by_id(engine: AsyncEngine, user_id: int) -> User | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(User.__table__).where(User.id == user_id))).first()
    return _user(row)


def _user(row) -> User | None:
    if row is None:
        return None
    return User(id=row.id, username=row.username, password_hash=row.password_hash, role=row.role,
                created_at=row.created_at)
