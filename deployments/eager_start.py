"""Start a coroutine in the caller's own step, as Python 3.12's eager tasks do, by hand: a socket's send
that need not wait (nearly every one) then costs no task and no trip through the event loop."""
from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any


def run_until_blocked(coro: Coroutine[Any, Any, None]) -> Awaitable[None] | None:
    """Run `coro` in the caller's step up to its first suspension (Python 3.12's eager tasks, by hand).
    None if it finished; otherwise a task that finishes it. Exceptions raised before blocking propagate.
    Until it blocks, `coro` runs as the caller's task: it must not open a timeout or task group there
    (a send through Starlette and uvicorn does neither)."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_resume(coro, waiting_on))


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], waiting_on: Any) -> Generator[Any, Any, None]:
    """Hand what a started coroutine waits on to the running task, and resume it with the outcome."""
    while True:
        try:
            outcome = yield waiting_on
        except GeneratorExit:  # the task was garbage-collected or closed: close the coroutine too
            coro.close()
            raise
        except BaseException as exc:
            try:
                waiting_on = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_on = coro.send(outcome)
            except StopIteration:
                return
