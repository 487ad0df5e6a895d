"""What the session tests share: the texts they type, the orchestrator's test settings, and the
server-sent events of a reply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource
from pydantic import SecretStr

from orchestrator.settings import Settings

BLOCK = 32  # the block size the tests configure (and the fakes simulate)
SYSTEM = (
    "You are a careful assistant for a small online shop. Answer questions about orders, "
    "customers, products and invoices in short, plain sentences, and say so when you do not know."
)
QUESTION = (
    "Which customers placed more than three orders in the last quarter, and what was the total "
    "value of those orders per customer, sorted from the highest to the lowest?"
)
SETTLE_S = 0.3  # how long "nothing more happens" is watched for


def settings_against(vllm_url: str, tokenizer_dir: Path, secret: str, **overrides: Any) -> Settings:
    """Settings for an orchestrator against a fake vLLM: no database, fast limits, no pause
    warm-up unless a test asks for one; `overrides` win."""
    values: dict[str, Any] = {
        "enable_database": False,
        "tokenizer": str(tokenizer_dir),
        "vllm_url": vllm_url,
        "block_size": BLOCK,
        "server_secret": SecretStr(secret),
        "typing_pause_ms": 60_000,  # no pause warm-up unless a test asks for one
        "speculate": "off",  # no speculative final unless a test asks for one
        "warmups_per_second": 1000.0,
        "ws_frames_per_second": 10_000.0,  # tests type faster than people
        "request_timeout_s": 10.0,
        "connect_timeout_s": 2.0,
    }
    return Settings(**{**values, **overrides})


def sse_data(response: httpx.Response) -> list[str]:
    """The data of every server-sent event of `response` (read whole or streaming)."""
    return [event.data for event in EventSource(response).iter_sse()]
