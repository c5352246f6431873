"""Passwords and tokens. HS256 JWTs carrying {sub, username, role}, as the seed's clients expect."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import jwt
from passlib.context import CryptContext

from domain.errors import Unauthorized

ROLES = ("assistant", "organizer")
MAX_USER_ID = 2**31 - 1
_passwords = CryptContext(schemes=["argon2"], deprecated="auto")


def hash_password(password: str) -> str:
    return _passwords.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return _passwords.verify(password, password_hash)


# Verifying against this when the user does not exist keeps login time the same either way.
_DUMMY_HASH = hash_password("not-a-real-password")


def verify_or_burn(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _passwords.verify(password, _DUMMY_HASH)
        return False
    return verify_password(password, password_hash)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a valid token."""

    user_id: int
    username: str
    role: str
    expires_at: float = field(default=0.0, compare=False)  # the token's `exp` (epoch seconds); 0: unknown

    @property
    def is_organizer(self) -> bool:
        return self.role == "organizer"


def issue_token(user_id: int, username: str, role: str, secret: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "username": username, "role": role, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(token: str, secret: str) -> Principal:
    """Decode and check a token; anything wrong (forged, expired, alg none, malformed) → 401."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp", "role"]}
        )
        principal = Principal(int(claims["sub"]), str(claims.get("username", "")), str(claims["role"]),
                              float(claims["exp"]))
    except (jwt.PyJWTError, ValueError, TypeError):
        raise Unauthorized("Invalid Token!") from None
    # Users ids are PostgreSQL `integer`s: a subject outside that range is no user (it used to reach the
    # database as an out-of-range parameter and answer 500).
    if principal.role not in ROLES or not 1 <= principal.user_id <= MAX_USER_ID:
        raise Unauthorized("Invalid Token!")
    return principal


def token_from_header(authorization: str | None) -> str:
    """`Bearer <token>` → token. The seed accepted any scheme word; we accept only Bearer."""
    if not authorization:
        raise Unauthorized("missing token!")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Invalid Token!")
    return token.strip()
