"""Abuse limits as plain rules: token buckets per (action, scope, key), no Ray, no HTTP.

A rate is "burst + refill": a key may spend `burst` tokens at once, then `refill` tokens come back per
second up to `burst` again. Holds cost one token per seat (a client taking 10 seats in one hold spends
10), everything else one token per request. A request is checked against every scope it has (the
account and the client address) and passes only if all of them have the tokens; a refused request
spends nothing and is told how long to wait (`Retry-After`, whole seconds, at least 1).

Written as text, a rate is `"10 + 24/hour"` (burst 10, 24 tokens an hour), `"60 + 30/min"`,
`"5 + 1/s"`; `"0"` or `"off"` turns that one limit off. The sizes and why: docs/operations.md,
"Abuse limits and slow clients".

State is one OrderedDict in the caller's process, bounded: a bucket that has refilled completely says
nothing a fresh bucket would not, so idle full buckets are dropped, and past `max_keys` the least
recently used key is forgotten (that key starts afresh: the limiter fails open, never closed).
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Mapping


class Action(str, Enum):
    REGISTER = "register"
    LOGIN = "login"
    QUEUE_JOIN = "queue_join"
    HOLD = "hold"


class Scope(str, Enum):
    ACCOUNT = "account"
    ADDRESS = "address"


UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(?P<burst>\d+(?:\.\d+)?)\s*(?:\+\s*(?P<amount>\d+(?:\.\d+)?)\s*/\s*(?P<unit>[a-z]+)\s*)?$")
OFF_WORDS = {"0", "off", "none", "false", ""}


@dataclass(frozen=True)
class Rate:
    """`burst` tokens at once, then `refill` tokens per second. burst 0: no limit."""

    burst: float
    refill: float = 0.0

    @property
    def on(self) -> bool:
        return self.burst > 0

    def refilled(self, tokens: float, seconds: float) -> float:
        """A bucket's tokens after `seconds` more of refill, never above the burst."""
        return min(self.burst, tokens + seconds * self.refill)

    def within(self, seconds: float) -> float:
        """The most tokens a key can spend in any `seconds` (a full bucket, then the refill)."""
        return self.burst + self.refill * seconds if self.on else math.inf

    @classmethod
    def parse(cls, text: str | int | float) -> "Rate":
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        if not isinstance(text, str):
            raise ValueError(f"a rate is text like '10 + 24/hour', not {text!r}")
        if text.strip().lower() in OFF_WORDS:
            return OFF
        m = _RATE.match(text.lower())
        if m is None or (m["unit"] is not None and m["unit"] not in UNITS):
            raise ValueError(f"a rate looks like '10 + 24/hour' (burst + refill per s, min or hour), not {text!r}")
        burst = float(m["burst"])
        refill = float(m["amount"]) / UNITS[m["unit"]] if m["amount"] is not None else 0.0
        if burst == 0:
            return OFF
        return cls(burst, refill)

    def __str__(self) -> str:
        if not self.on:
            return "off"
        per_hour = self.refill * 3600
        amount, unit = (per_hour, "hour") if per_hour < 60 else (self.refill * 60, "min")
        return f"{self.burst:g} + {amount:g}/{unit}"


OFF = Rate(0.0, 0.0)
Key = tuple[Action, Scope]

# Per Gateway replica (each replica keeps its own buckets: docs/operations.md says what that means).
DEFAULT_RATES: dict[Key, Rate] = {
    (Action.REGISTER, Scope.ADDRESS): Rate.parse("20 + 10/hour"),
    (Action.LOGIN, Scope.ADDRESS): Rate.parse("60 + 30/min"),
    (Action.LOGIN, Scope.ACCOUNT): Rate.parse("10 + 5/min"),
    (Action.QUEUE_JOIN, Scope.ADDRESS): Rate.parse("60 + 30/min"),
    (Action.QUEUE_JOIN, Scope.ACCOUNT): Rate.parse("10 + 10/min"),
    (Action.HOLD, Scope.ADDRESS): Rate.parse("10 + 24/hour"),  # seats
    (Action.HOLD, Scope.ACCOUNT): Rate.parse("10 + 10/min"),  # seats
}


@dataclass(frozen=True)
class Limits:
    """Every (action, scope) rate; a pair that is missing is not limited."""

    rates: Mapping[Key, Rate] = field(default_factory=lambda: dict(DEFAULT_RATES))
    max_keys: int = 100_000

    def rate(self, action: Action, scope: Scope) -> Rate:
        return self.rates.get((action, scope), OFF)

    @classmethod
    def off(cls) -> "Limits":
        return cls(rates={})

    def merged(self, spec) -> "Limits":
        """These limits with `spec` laid over them. `spec` is "off" (every limit off), a mapping
        `{action: {scope: rate}}` or `{action: rate-for-every-scope}` (the user_config form), or text
        `"hold.address=10 + 24/hour, login.account=off"` (the environment's form). None: unchanged."""
        if spec is None:
            return self
        if spec is False or (isinstance(spec, str) and spec.strip().lower() in OFF_WORDS - {""}):
            return replace(self, rates={})
        if isinstance(spec, str):
            spec = _parse_text(spec)
        if not isinstance(spec, Mapping):
            raise ValueError(f"rate_limits must be 'off', a mapping or text, not {spec!r}")
        rates = dict(self.rates)
        max_keys = self.max_keys
        for name, value in spec.items():
            if name == "max_keys":
                max_keys = int(value)
                continue
            action = _enum(Action, name)
            scoped = value if isinstance(value, Mapping) else {scope.value: value for scope in Scope}
            for scope_name, rate in scoped.items():
                rates[(action, _enum(Scope, scope_name))] = Rate.parse(rate)
        if max_keys < 1:
            raise ValueError("rate_limits.max_keys must be at least 1")
        return Limits(rates={k: r for k, r in rates.items() if r.on}, max_keys=max_keys)

    def describe(self) -> dict:
        """The user_config form of these limits, `{action: {scope: "burst + refill/unit"}}`."""
        out: dict[str, dict[str, str]] = {}
        for (action, scope), rate in sorted(self.rates.items(), key=lambda kv: (kv[0][0].value, kv[0][1].value)):
            out.setdefault(action.value, {})[scope.value] = str(rate)
        return out


def _enum(kind, name: str):
    try:
        return kind(str(name).strip().lower())
    except ValueError:
        raise ValueError(f"unknown {kind.__name__.lower()} {name!r}: one of "
                         f"{', '.join(m.value for m in kind)}") from None


def _parse_text(text: str) -> dict:
    spec: dict[str, dict[str, str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, rate = part.partition("=")
        if not sep:
            raise ValueError(f"each rate limit looks like 'hold.address=10 + 24/hour', not {part!r}")
        action, _, scope = name.strip().partition(".")
        if action == "max_keys":
            spec[action] = rate  # type: ignore[assignment]
        elif scope:
            spec.setdefault(action, {})[scope] = rate
        else:
            spec.setdefault(action, {}).update({s.value: rate for s in Scope})
    return spec


@dataclass(frozen=True)
class Refused:
    """Why a request was refused: which limit, and the whole seconds until it would pass."""

    action: Action
    scope: Scope
    retry_after: int


SWEEP_EVERY = 1024  # new keys between two sweeps of idle full buckets


class Limiter:
    """Token buckets in one process. `check` is the whole API; `now` is the caller's monotonic clock."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        # (action, scope, key) -> [tokens, last refill time]; least recently used first.
        self.buckets: OrderedDict[tuple[Action, Scope, str], list[float]] = OrderedDict()
        self.inserted = 0

    def configure(self, limits: Limits) -> None:
        """New limits; buckets keep their tokens (capped to the new bursts on their next use)."""
        self.limits = limits

    def check(self, action: Action, now: float, cost: float = 1.0, **keys: str | None) -> Refused | None:
        """Spend `cost` tokens of `action` for each scope given (`account=`, `address=`; None or an
        empty key skips that scope) if every one of them has them; else spend nothing and say why.
        A cost above a bucket's burst costs the whole burst (it passes once the bucket is full); a cost
        below 1 costs 1 (a caller's bad input never refills a bucket)."""
        found: list[tuple[list[float], float]] = []
        worst: Refused | None = None
        for scope_name, key in keys.items():
            if not key:
                continue
            scope = Scope(scope_name)
            rate = self.limits.rate(action, scope)
            if not rate.on:
                continue
            bucket = self._bucket((action, scope, key), rate, now)
            need = min(max(cost, 1.0), rate.burst)
            if bucket[0] + 1e-9 >= need:
                found.append((bucket, need))
            else:
                wait = math.inf if rate.refill <= 0 else (need - bucket[0]) / rate.refill
                seconds = max(1, math.ceil(wait - 1e-9)) if wait != math.inf else 3600
                if worst is None or seconds > worst.retry_after:
                    worst = Refused(action, scope, seconds)
        if worst is not None:
            return worst
        for bucket, need in found:
            bucket[0] -= need
        return None

    def _bucket(self, name: tuple[Action, Scope, str], rate: Rate, now: float) -> list[float]:
        bucket = self.buckets.get(name)
        if bucket is None:
            bucket = self.buckets[name] = [rate.burst, now]
            self.inserted += 1
            if self.inserted % SWEEP_EVERY == 0 or len(self.buckets) > self.limits.max_keys:
                self.sweep(now)
                while len(self.buckets) > self.limits.max_keys:
                    self.buckets.popitem(last=False)  # least recently used: forgotten, starts afresh
            return bucket
        self.buckets.move_to_end(name)
        bucket[0] = rate.refilled(bucket[0], now - bucket[1])
        bucket[1] = now
        return bucket

    def sweep(self, now: float) -> int:
        """Drop the buckets that have refilled completely (from the least recently used on, stopping at
        the first that has not): they hold nothing a new bucket would not. Returns how many went."""
        dropped = 0
        while self.buckets:
            (action, scope, key), bucket = next(iter(self.buckets.items()))
            rate = self.limits.rate(action, scope)
            full = not rate.on or rate.refilled(bucket[0], now - bucket[1]) >= rate.burst
            if not full:
                break
            self.buckets.popitem(last=False)
            dropped += 1
        return dropped


def retry_message(action: Action, seconds: int) -> str:
    what = {Action.REGISTER: "registrations", Action.LOGIN: "login attempts",
            Action.QUEUE_JOIN: "queue joins", Action.HOLD: "seat holds"}[action]
    return f"Too many {what}, try again in {seconds} second{'s' if seconds != 1 else ''}"
