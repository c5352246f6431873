"""Settings read from the environment, in one place.

Every process of the system (Serve replicas, category actors, the CLI, tests) resolves its settings
through this module, so the table in docs/configuration.md describes all of them.

A leaf: this module imports nothing of the project, so any package may read it. `storage` does not:
its callers pass it what it needs (the data folder).
"""
from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

DEFAULT_DATA_DIR = ".ticketing"
DEFAULT_CORS_ORIGINS = (
    "http://localhost:3000,http://localhost:4200,http://localhost:8080,http://127.0.0.1:5500,null"
)


def data_dir() -> Path:
    """Folder for the embedded database and the generated JWT secret (absolute)."""
    return Path(os.environ.get("TICKETING_DATA_DIR", DEFAULT_DATA_DIR)).expanduser().resolve()


def jwt_secret(folder: Path | None = None) -> str:
    """`JWT_SECRET` from the environment, else a random per-install secret kept in the data folder."""
    from_env = os.environ.get("JWT_SECRET")
    if from_env:
        return from_env
    folder = folder or data_dir()
    path = folder / "jwt_secret"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        # Written whole under a name of its own, then linked into place: when several replicas start at once,
        # the first link wins and the others read it, and nobody can read the file before it is written
        # (a replica that read it empty would refuse every token until it restarted).
        draft = folder / f".jwt_secret.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    secret = path.read_text().strip()
    if not secret:
        raise RuntimeError(f"{path} is empty: delete it (a new secret is made; tokens signed before stop working) "
                           "or set JWT_SECRET")
    return secret


@dataclass(frozen=True)
class Tunables:
    """Business tunables, the one definition: the environment gives the base (`tunables()`, read once per
    process); `user_config` in serve_config.yaml overrides it per deployment (`merged`). Only
    `actors.client.CategoryActors` keeps the process's current values and hands them to category actors."""

    hold_seconds: float = 300.0
    max_per_order: int = 10

    @classmethod
    def from_env(cls) -> "Tunables":
        return cls(
            hold_seconds=float(os.environ.get("TICKETING_HOLD_SECONDS", cls.hold_seconds)),
            max_per_order=int(os.environ.get("TICKETING_MAX_PER_ORDER", cls.max_per_order)),
        )

    def merged(self, overrides: dict | None) -> "Tunables":
        overrides = overrides or {}
        return Tunables(
            hold_seconds=float(overrides.get("hold_seconds", self.hold_seconds)),
            max_per_order=int(overrides.get("max_per_order", self.max_per_order)),
        )

    def as_dict(self) -> dict:
        """The form category actors take (a plain dict: actors also accept partial updates)."""
        return asdict(self)


@cache
def tunables() -> Tunables:
    """The environment's tunables (TICKETING_HOLD_SECONDS, TICKETING_MAX_PER_ORDER), read once."""
    return Tunables.from_env()


def actor_idle_exit_seconds() -> float:
    """A category actor idle this long with no active hold ends its process (0: never, the default, so
    categories on sale stay warm). For machines that hold many more categories than they sell at once."""
    return float(os.environ.get("TICKETING_ACTOR_IDLE_EXIT_SECONDS", "0"))


def closed_actor_exit_seconds() -> float:
    """A category actor whose category can no longer sell (off sale: its event or itself deleted or
    deactivated; or its event has taken place), idle this long with no active hold, ends its process (0:
    never). Nothing is left to keep warm: a later cancellation, or an organizer's edit that puts it on sale
    again, starts a successor."""
    return float(os.environ.get("TICKETING_CLOSED_ACTOR_EXIT_SECONDS", "60"))


def publish_interval_seconds() -> float:
    """`TICKETING_PUBLISH_INTERVAL_S`: least time between two availability publishes of one category (or
    waiting-room figures of one event) to the broadcaster; changes in between are merged (0: after every
    committed batch)."""
    return float(os.environ.get("TICKETING_PUBLISH_INTERVAL_S", "0.05"))


def refusal_lease_seconds() -> float:
    """`TICKETING_REFUSAL_LEASE_S`: how long a caller may answer a sold-out or off-sale category's refusals
    itself (domain.inventory.RefusalLease), and so how long a cancellation or release may wait for the
    leases to run out (0: no leases; every request reaches the category actor)."""
    return float(os.environ.get("TICKETING_REFUSAL_LEASE_S", "0.05"))


def rate_limits() -> str | None:
    """`TICKETING_RATE_LIMITS`: abuse limits laid over the defaults of `domain.limits`, as text
    (`"hold.address=40 + 10/min, login.account=off"`, or `"off"`); user_config's `rate_limits` wins."""
    return os.environ.get("TICKETING_RATE_LIMITS") or None


def client_address_header() -> str | None:
    """`TICKETING_CLIENT_ADDRESS_HEADER`: the header (e.g. X-Forwarded-For) in which a trusted load balancer
    puts the client's address; its last hop is used. Unset: the peer address the ingress sees. `none`:
    no trustworthy address, so no per-address limits (docs/operations.md, "Abuse limits and slow clients")."""
    return os.environ.get("TICKETING_CLIENT_ADDRESS_HEADER", "").strip() or None


def haproxy_ingress() -> bool:
    """Serve's HAProxy ingress is on (RAY_SERVE_ENABLE_HA_PROXY=1, as `ticketing serve` sets it)."""
    return os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"


def jwt_ttl_seconds() -> int:
    return int(os.environ.get("JWT_EXPIRES_SECONDS", "3600"))


def cors_origins() -> list[str]:
    raw = os.environ.get("TICKETING_CORS_ORIGINS", DEFAULT_CORS_ORIGINS)
    return [o.strip() for o in raw.split(",") if o.strip()]


@dataclass(frozen=True)
class PasswordHashing:
    """argon2id cost of new password hashes, and how many threads of an AuthService replica hash at once.

    Defaults: OWASP's recommended minimum for argon2id (m = 19 MiB, t = 2, p = 1). Stored hashes made
    with other parameters are re-hashed at the user's next successful login.
    """

    memory_kib: int = 19456
    time_cost: int = 2
    parallelism: int = 1
    threads: int = 0  # 0: one per core of the machine

    @classmethod
    def from_env(cls) -> PasswordHashing:
        return cls(
            memory_kib=int(os.environ.get("TICKETING_ARGON2_MEMORY_KIB", cls.memory_kib)),
            time_cost=int(os.environ.get("TICKETING_ARGON2_TIME_COST", cls.time_cost)),
            parallelism=int(os.environ.get("TICKETING_ARGON2_PARALLELISM", cls.parallelism)),
            threads=int(os.environ.get("TICKETING_HASH_THREADS", cls.threads)),
        )

    def thread_count(self) -> int:
        if self.threads > 0:
            return self.threads
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)


def password_hashing() -> PasswordHashing:
    return PasswordHashing.from_env()
