"""Passwords and tokens. HS256 JWTs carrying {sub, username, role}, as the seed's clients expect."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import jwt
import nacl.pwhash.argon2id as sodium_argon2id
from jwt.algorithms import HMACAlgorithm
from nacl.exceptions import InvalidkeyError
from passlib.context import CryptContext
from passlib.hash import argon2 as _argon2

from domain.errors import Unauthorized
from domain.vocabulary import MAX_ID, ROLES, Role

# The hashes libsodium checks: argon2id version 1.3 with one lane, no longer than it accepts.
_SODIUM_HASH = re.compile(r"\$argon2id\$v=19\$m=[0-9]+,t=[0-9]+,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")
_SODIUM_MAX_HASH = 127


@dataclass(frozen=True)
class Argon2Params:
    """argon2id cost parameters. Defaults: OWASP's recommended minimum (m = 19 MiB, t = 2, p = 1)."""

    memory_kib: int = 19456
    time_cost: int = 2
    parallelism: int = 1

    def __post_init__(self) -> None:
        if self.time_cost < 1 or self.parallelism < 1:
            raise ValueError("argon2 time cost and parallelism must be at least 1")
        if self.memory_kib < 8 * self.parallelism:
            raise ValueError("argon2 memory must be at least 8 KiB per lane (8 x parallelism)")


class PasswordHasher:
    """Hashes and verifies passwords with argon2id at the given parameters.

    Built from parameters passed in (the deployment reads them from `ticketing.settings`); the domain
    never reads the environment. Thread-safe: both libraries release the GIL while hashing, so calls
    from several threads use several cores.

    argon2id runs on libsodium (PyNaCl), which picks its AVX2 or AVX-512 code for the CPU at run time;
    the argon2-cffi wheel that passlib uses is built for SSE2 only. Same machine, 2026-12-03: one verify
    at m = 19 MiB, t = 2 took 24 ms with libsodium and 40 ms with argon2-cffi, and two threads verified
    71 a second against 47. Both write and read the same PHC strings (`$argon2id$v=19$m=..,t=..,p=1$`),
    so either verifies the other's hashes. libsodium makes and checks only those (one lane, version 1.3,
    at most 127 characters): every other hash (other parallelisms, versions, salt or digest sizes, other
    argon2 types) is made and checked by passlib, which also decides what needs an upgrade.
    """

    def __init__(self, params: Argon2Params | None = None) -> None:
        self.params = params or Argon2Params()
        self._context = CryptContext(
            schemes=["argon2"], deprecated="auto",
            argon2__type="ID",
            argon2__memory_cost=self.params.memory_kib,
            argon2__rounds=self.params.time_cost,
            argon2__parallelism=self.params.parallelism,
        )
        # Verifying against this when the user does not exist keeps login time the same either way: it
        # is made here, with the same parameters as every new hash, so it costs what a real verify costs.
        self._dummy_hash = self.hash("not-a-real-password")

    def hash(self, password: str) -> str:
        if self.params.parallelism != 1:
            return self._context.hash(password)
        return sodium_argon2id.str(password.encode(), opslimit=self.params.time_cost,
                                   memlimit=self.params.memory_kib * 1024).decode("ascii")

    def verify(self, password: str, password_hash: str) -> bool:
        """A stored value that is no hash either library can read (damaged, or the placeholder of accounts
        minted for rush tests) is a wrong password, not an error, and costs what a wrong password costs:
        a quick refusal would tell a caller which accounts have no usable password."""
        try:
            return self._verify(password, password_hash)
        except ValueError:  # a hash neither reads (passlib's UnknownHashError is one)
            self._verify(password, self._dummy_hash)
            return False

    def _verify(self, password: str, password_hash: str) -> bool:
        if len(password_hash) <= _SODIUM_MAX_HASH and _SODIUM_HASH.fullmatch(password_hash):
            try:
                return sodium_argon2id.verify(password_hash.encode("ascii"), password.encode())
            except InvalidkeyError:  # libsodium's answer to a wrong password
                return False
        return self._context.verify(password, password_hash)

    def needs_update(self, password_hash: str) -> bool:
        """True when the hash was not made with exactly this hasher's scheme and parameters.

        passlib's CryptContext policy covers this in the installed version (1.9); the explicit comparison
        keeps it exact under passlib versions whose policy ignores the time cost or the parallelism.
        """
        if self._context.needs_update(password_hash):
            return True
        parsed = _argon2.from_string(password_hash)
        return (parsed.type, parsed.memory_cost, parsed.rounds, parsed.parallelism) != (
            "id", self.params.memory_kib, self.params.time_cost, self.params.parallelism)

    def verify_or_burn(self, password: str, password_hash: str | None) -> bool:
        """Verify; an unknown user (`password_hash` None) costs one verify at the same parameters too."""
        if password_hash is None:
            self.verify(password, self._dummy_hash)
            return False
        return self.verify(password, password_hash)

    def verify_and_update(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """(valid, new hash or None): a new hash is made only for a valid password whose stored hash was
        made with other parameters, so that the caller can store it (upgrade at login)."""
        if not self.verify_or_burn(password, password_hash):
            return False, None
        return True, (self.hash(password) if self.needs_update(password_hash) else None)


@cache
def default_hasher() -> PasswordHasher:
    """A hasher at the default parameters, for tools and tests (the AuthService builds its own)."""
    return PasswordHasher()


def hash_password(password: str) -> str:
    return default_hasher().hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return default_hasher().verify(password, password_hash)


def verify_or_burn(password: str, password_hash: str | None) -> bool:
    return default_hasher().verify_or_burn(password, password_hash)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a valid token."""

    user_id: int
    username: str
    role: str
    expires_at: float = field(default=0.0, compare=False)  # the token's `exp` (epoch seconds); 0: unknown

    @property
    def is_organizer(self) -> bool:
        return self.role == Role.ORGANIZER


class _HS256KeyCheckedOnce(HMACAlgorithm):
    """PyJWT's HS256, except that a secret is vetted once instead of on every decode. PyJWT re-checks the
    key each time (is it a PEM, SSH, DER or JWK key, and is it long enough?), which was 40 % of checking a
    token (2026-12-02: 117 µs a token with it, 71 µs without; the buy routes check one per request)."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)

    @lru_cache(maxsize=8)  # noqa: B019 - one instance for the process's life; keys are the install's secrets
    def prepare_key(self, key: str | bytes) -> bytes:
        return super().prepare_key(key)

    @lru_cache(maxsize=8)  # noqa: B019
    def check_key_length(self, key: bytes) -> str | None:
        return super().check_key_length(key)


_decoder = jwt.PyJWT()
# PyJWT offers no public way to give its JWT layer an algorithm; its JWS layer (`_jws`) does.
_decoder._jws.unregister_algorithm("HS256")
_decoder._jws.register_algorithm("HS256", _HS256KeyCheckedOnce())


def decode_hs256(token: str, secret: str, require: list[str]) -> dict[str, Any]:
    """The claims of an HS256 token signed with `secret` that has every claim in `require` and has not
    expired; PyJWT's errors otherwise. Tokens of other algorithms (`none` included) are refused."""
    return _decoder.decode(token, secret, algorithms=["HS256"], options={"require": require})


def issue_token(user_id: int, username: str, role: str, secret: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "username": username, "role": role, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(token: str, secret: str) -> Principal:
    """Decode and check a token; anything wrong (forged, expired, alg none, malformed) → 401."""
    try:
        claims = decode_hs256(token, secret, ["sub", "exp", "role"])
        principal = Principal(int(claims["sub"]), str(claims.get("username", "")), str(claims["role"]),
                              float(claims["exp"]))
    except (jwt.PyJWTError, ValueError, TypeError):
        raise Unauthorized("Invalid Token!") from None
    # Users ids are PostgreSQL `integer`s: a subject outside that range is no user (it used to reach the
    # database as an out-of-range parameter and answer 500).
    if principal.role not in ROLES or not 1 <= principal.user_id <= MAX_ID:
        raise Unauthorized("Invalid Token!")
    return principal


class VerifiedTokens:
    """Tokens whose signature was already checked, so a buyer's next requests skip the HMAC and JSON
    work of `verify_token` (a rush is many requests per token). Expiry is checked on every use, and the
    cache is emptied when full, so it stays bounded and never outlives a token."""

    def __init__(self, secret: str, max_entries: int = 100_000) -> None:
        self.secret = secret
        self.max_entries = max_entries
        self._known: dict[str, Principal] = {}

    def verify(self, token: str) -> Principal:
        principal = self._known.get(token)
        if principal is None:
            principal = verify_token(token, self.secret)
            if len(self._known) >= self.max_entries:
                self._known.clear()
            self._known[token] = principal
        elif principal.expires_at <= time.time():
            del self._known[token]
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
