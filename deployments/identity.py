"""Who is calling: the JWT guard as FastAPI dependencies, and the typed path and query parameters of the routes.

The guard reads `app.state.tokens` (a `domain.auth.VerifiedTokens`), which the Gateway sets when it
starts, since the secret is known only then.
"""
# No `from __future__ import annotations`: FastAPI reads these annotations at run time.
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request

from domain.auth import Principal, token_from_header
from domain.errors import ApiError
from domain.vocabulary import MAX_ID, MAX_PAGE


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool,
# a thread hop per request that cost the hold path a third of its throughput.
async def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return request.app.state.tokens.verify(token_from_header(authorization))


async def maybe_principal(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal | None:
    """For public routes that show more to the right caller; a bad token means anonymous."""
    try:
        return await principal(request, authorization)
    except ApiError:
        return None


Caller = Annotated[Principal, Depends(principal)]
MaybeCaller = Annotated[Principal | None, Depends(maybe_principal)]
EventId = Annotated[int, Path(ge=1, le=MAX_ID)]
# An event category is at most 100 characters and PostgreSQL text cannot hold NUL (it answered 500).
CategoryName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]
OrderId = Annotated[int, Path(ge=1, le=2**63 - 1)]
# A page of a long list (`?limit=&offset=`): optional, so the seed's clients, which send neither, get the
# whole list as before. An organizer's 20,000 orders cost the Gateway about 40 ms of CPU in one answer.
PageLimit = Annotated[int | None, Query(ge=1, le=MAX_PAGE)]
PageOffset = Annotated[int, Query(ge=0, le=2**63 - 1)]
