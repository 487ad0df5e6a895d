"""PostgreSQL URLs (passwords masked whenever shown) and one-line reasons for its errors."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict


def mask_url(url: str) -> str:
    """`url` as a URL with its password replaced by `***`."""
    try:
        return url_of(parse_url(url), mask=True)
    except psycopg.Error:
        return "<unparsable database URL>"


def parse_url(url: str) -> dict[str, str]:
    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def url_of(params: dict[str, str], *, mask: bool = False) -> str:
    rest = dict(params)
    user, password = quote(rest.pop("user", ""), safe=""), rest.pop("password", None)
    host, port, dbname = rest.pop("host", ""), rest.pop("port", ""), rest.pop("dbname", "")
    if password is not None:
        user += ":" + ("***" if mask else quote(password, safe=""))
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    if host.startswith("/") or "," in host:  # a socket folder, or several hosts
        rest, netloc = {"host": host, **({"port": port} if port else {}), **rest}, ""
    query = urlencode(rest, quote_via=quote, safe="/")
    url = f"postgresql://{user}{'@' if user else ''}{netloc}/{quote(dbname, safe='')}"
    return f"{url}?{query}" if query else url


def error_lines(exc: BaseException) -> list[str]:
    lines = [line.strip(" \t-") for line in str(exc).splitlines()]
    return [line for line in lines if line] or [type(exc).__name__]


def reason(exc: BaseException) -> str:
    """One short line saying why `exc` happened (never the URL, so never a password)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    line = next((x for x in error_lines(exc) if "failed: " in x), error_lines(exc)[0])
    reason = line.rsplit("failed: ", 1)[-1].strip()  # libpq: 'connection to ... failed: why'
    return reason[0].lower() + reason[1:] if reason[1:2].islower() else reason
