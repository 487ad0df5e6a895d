"""Prefix popularity over HTTP: `GET /v1/hints` and `DELETE /v1/popularity`.

At start (`startup.py`) the popularity rows are loaded from the database (or kept in memory without
one), its rows are saved in the background, and the index's top contexts are re-warmed: in
the background while the service serves (its progress in `/health` under `rewarm`), or before
it serves with `PREFILL_REWARM_BEFORE_READY=true`. The engine watch re-warms them again
whenever vLLM comes back (`SessionServices.on_engine_recovered`).

`GET /v1/hints` lists the caller's own top contexts (its tenant, and the cache namespace it
names): which context its users are likely to pick next. A hint carries no token and no text;
another tenant's contexts are never listed.

`DELETE /v1/popularity` forgets what was recorded of the caller (its stored rows, the unsaved
ones and its part of the index); `DELETE /v1/popularity/{tenant}` does so for any tenant with an
admin key (a tenant's key may name only its own). Release 0.1 named them `DELETE /v1/trace`
and `/v1/trace/{tenant}`: still served, marked deprecated, until the next release.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from orchestrator.errors import Forbidden
from orchestrator.web.dependencies import Reader, Tenant, services_of
from orchestrator.web.services import Services

log = logging.getLogger(__name__)
router = APIRouter(tags=["warm-ups"])
MAX_HINTS = 100


class Hint(BaseModel):
    rank: int
    label: str | None = Field(description="The named context (a text-to-SQL database), if any.")
    tokens: int = Field(description="Tokens of the shared prefix (whole blocks).")
    score: float = Field(description="Decayed count of the requests that shared it.")
    expected_saved_tokens: float = Field(description="score x tokens: the ranking.")
    last_seen: float = Field(description="Unix time of the latest request through it.")


class Hints(BaseModel):
    block_size: int | None
    contexts: list[Hint]


@router.get("/v1/hints", summary="The caller's most popular contexts: what to warm first")
async def hints(
    request: Request,
    tenant: Tenant,
    top: Annotated[int, Query(ge=1, le=MAX_HINTS, description="How many.")] = 5,
    cache_namespace: Annotated[
        str | None, Query(max_length=128, description="The namespace of a session's start.")
    ] = None,
) -> Hints:
    services = services_of(request)
    if services.popularity is None:
        return Hints(block_size=None, contexts=[])
    block_size = (await services.engine_facts()).block_size
    found = services.popularity.hints(tenant, cache_namespace, block_size, top)
    return Hints(
        block_size=block_size,
        contexts=[
            Hint(
                rank=rank,
                label=c.label,
                tokens=len(c.tokens),
                score=round(c.score, 4),
                expected_saved_tokens=round(c.expected_saved, 1),
                last_seen=c.last_seen,
            )
            for rank, c in enumerate(found, start=1)
        ],
    )


class PopularityForgotten(BaseModel):
    object: str = "popularity"
    tenant: str
    deleted: bool = True
    rows: int = Field(description="Popularity rows deleted (stored and not yet saved).")


OWN = "Forget the caller's prefix popularity"
ANY = "Forget a tenant's prefix popularity (an admin key; a tenant: its own)"


@router.delete("/v1/popularity", summary=OWN)
@router.delete("/v1/trace", summary=OWN + " (deprecated: DELETE /v1/popularity)", deprecated=True)
async def forget_own_popularity(request: Request, tenant: Tenant) -> PopularityForgotten:
    return await forget(services_of(request), tenant)


@router.delete("/v1/popularity/{tenant}", summary=ANY)
@router.delete("/v1/trace/{tenant}", summary=ANY + " (deprecated)", deprecated=True)
async def forget_popularity(request: Request, tenant: str, reader: Reader) -> PopularityForgotten:
    if not reader.admin and reader.tenant != tenant:
        raise Forbidden("a tenant's key forgets only its own rows", code="admin_key_required")
    return await forget(services_of(request), tenant)


async def forget(services: Services, tenant: str) -> PopularityForgotten:
    rows = await services.popularity.forget(tenant) if services.popularity else 0
    log.info("popularity of tenant %s forgotten: %d rows", tenant, rows)
    return PopularityForgotten(tenant=tenant, rows=rows)
