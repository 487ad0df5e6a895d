"""The services of one application: the session core's, and what only the web routes use."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from orchestrator.core.services import SessionServices
from orchestrator.logs import LogRing
from orchestrator.text_to_sql.contexts import SqlContexts
from orchestrator.text_to_sql.postgres import Database


@dataclass(kw_only=True)
class Services(SessionServices):
    """Built in the lifespan, closed with it; reached through `dependencies.services_of`.
    `sql` is also the core's `contexts`."""

    http: httpx.AsyncClient  # the passthrough builds its own requests on it
    database: Database | None
    sql: SqlContexts
    log_ring: LogRing  # the orchestrator's recent log records, for GET /logs
