"""The services of one application: the session core's, and what only the web routes use."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

from orchestrator.core.services import SessionServices
from orchestrator.core.states.store import StateStore
from orchestrator.db.server import Database
from orchestrator.logs import LogRing
from orchestrator.text_to_sql.contexts import SqlContexts


@dataclass(frozen=True, kw_only=True)
class Services(SessionServices):
    """Built by `startup.open_services`, closed with the application; reached through
    `dependencies.services_of`. `sql` is also the core's `contexts`."""

    http: httpx.AsyncClient  # the passthrough builds its own requests on it
    database: Database | None
    sql: SqlContexts
    log_ring: LogRing  # the orchestrator's recent log records, for GET /logs
    states: StateStore  # named prefix states
    state_locks: defaultdict[str, asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )  # per tenant: a budget check and the state it admits, one at a time
