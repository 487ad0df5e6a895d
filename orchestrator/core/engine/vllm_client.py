"""Talking to vLLM: one shared `httpx.AsyncClient`; errors mapped once to the service's own."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.core.engine.salt import ROUTE_HEADER
from orchestrator.errors import (
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

BLOCK_SIZE_METRIC = re.compile(r'^vllm:cache_config_info\{[^}]*\bblock_size="(\d+)"', re.MULTILINE)


@dataclass(frozen=True)
class EngineStatus:
    ok: bool
    model: str | None = None
    block_size: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class EngineFacts:
    """What sessions need to know about the served model, read once from vLLM."""

    model: str
    block_size: int
    max_model_len: int | None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int

    @classmethod
    def from_body(cls, usage: dict[str, Any] | None) -> Usage:
        usage = usage or {}
        details = usage.get("prompt_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
        )


def parse_block_size(metrics: str) -> int | None:
    match = BLOCK_SIZE_METRIC.search(metrics)
    return int(match.group(1)) if match else None


def upstream_message(response: httpx.Response) -> str:
    """vLLM's own error message, whatever shape its body has."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


class VLLMClient:
    """The few vLLM calls the orchestrator makes itself (the passthrough relays the rest)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        on_error: Callable[[UpstreamError], None] | None = None,
        replicas: Sequence[str] = (),
    ) -> None:
        self.http = http
        self.on_error = on_error  # told of every failed call (the metrics count them)
        self.replicas = list(replicas)  # behind a router at the base URL (it has no /metrics)

    def failed(self, error: UpstreamError) -> UpstreamError:
        """`error`, once reported to `on_error`: `raise self.failed(...)`."""
        if self.on_error is not None:
            self.on_error(error)
        return error

    async def send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send `request`; transport failures become UpstreamTimeout / UpstreamUnavailable."""
        try:
            return await self.http.send(request, stream=stream)
        except httpx.TimeoutException as error:
            path = request.url.path
            raise self.failed(UpstreamTimeout(f"vLLM did not answer {path} in time")) from error
        except httpx.TransportError as error:
            reason = str(error) or type(error).__name__
            raise self.failed(UpstreamUnavailable(f"vLLM is unreachable: {reason}")) from error

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.send(self.http.build_request(method, path, **kwargs))
        if 400 <= response.status_code < 500 and response.status_code != 429:
            raise self.failed(
                UpstreamRejected(
                    f"vLLM refused the request ({response.status_code}): "
                    f"{upstream_message(response)}"
                )
            )
        if response.status_code >= 400:
            raise self.failed(
                UpstreamError(f"vLLM answered {response.status_code}: {upstream_message(response)}")
            )
        return response

    async def facts(self, block_size: int | None = None) -> EngineFacts:
        """The served model, its block size (unless given) and context length."""
        models = (await self.request("GET", "/v1/models")).json().get("data", [])
        if not models:
            raise UpstreamError("vLLM serves no model")
        block = block_size or await self.block_size()
        if block is None:
            raise UpstreamError(
                "vLLM's /metrics does not say its block size; set PREFILL_BLOCK_SIZE"
            )
        length = models[0].get("max_model_len")
        return EngineFacts(str(models[0]["id"]), block, int(length) if length else None)

    async def model_names(self) -> list[str]:
        body = (await self.request("GET", "/v1/models")).json()
        return [str(model["id"]) for model in body.get("data", [])]

    async def block_size(self) -> int | None:
        return parse_block_size(await self.metrics_text())

    async def metrics_text(self) -> str:
        """vLLM's own Prometheus exposition (`GET /metrics`)."""
        where = f"{self.replicas[0]}/metrics" if self.replicas else "/metrics"
        return (await self.request("GET", where)).text

    async def replica_status(self) -> list[dict[str, Any]]:
        """Does each replica behind the router answer (`GET /v1/models`)?"""

        async def one(url: str) -> dict[str, Any]:
            try:
                await self.request("GET", f"{url}/v1/models", timeout=2.0)
            except UpstreamError as error:
                return {"url": url, "ok": False, "error": error.message}
            return {"url": url, "ok": True, "error": None}

        return list(await asyncio.gather(*(one(url) for url in self.replicas)))

    async def status(self) -> EngineStatus:
        try:
            models = await self.model_names()
            block = await self.block_size()
        except UpstreamError as error:
            return EngineStatus(ok=False, error=error.message)
        return EngineStatus(ok=True, model=models[0] if models else None, block_size=block)

    async def complete(
        self, body: dict[str, Any], request_id: str | None = None, route: str | None = None
    ) -> dict[str, Any]:
        """A non-streaming `/v1/completions` call (`request_id` names it in vLLM's logs;
        `route` keeps it on its session's replica behind a router)."""
        headers = upstream_headers(request_id, route)
        payload = {**body, "stream": False}
        response = await self.request("POST", "/v1/completions", json=payload, headers=headers)
        result: dict[str, Any] = response.json()
        return result

    async def stream_completion(
        self, body: dict[str, Any], request_id: str | None = None, route: str | None = None
    ) -> AsyncGenerator[dict[str, Any]]:
        """Stream `/v1/completions` chunks; closing the iterator closes the upstream stream."""
        payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
        headers = upstream_headers(request_id, route)
        request = self.http.build_request("POST", "/v1/completions", json=payload, headers=headers)
        response = await self.send(request, stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                raise UpstreamError(
                    f"vLLM answered {response.status_code}: {upstream_message(response)}"
                )
            async for line in response.aiter_lines():
                chunk = parse_sse_line(line)
                if chunk is not None:
                    yield chunk
        except UpstreamError as error:
            self.failed(error)
            raise
        except httpx.TimeoutException as error:
            raise self.failed(UpstreamTimeout("vLLM stalled in the middle of a stream")) from error
        except httpx.TransportError as error:
            raise self.failed(UpstreamUnavailable("vLLM dropped the stream")) from error
        finally:
            await response.aclose()


def upstream_headers(request_id: str | None, route: str | None) -> dict[str, str]:
    headers = {"X-Request-Id": request_id} if request_id else {}
    return headers | ({ROUTE_HEADER: route} if route else {})


def parse_sse_line(line: str) -> dict[str, Any] | None:
    """The JSON of one `data:` line; None for blanks, comments and `[DONE]`."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    chunk = json.loads(data)
    if isinstance(chunk, dict) and "error" in chunk:
        error = chunk["error"]
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        raise UpstreamError(f"vLLM failed mid-stream: {message}")
    return chunk if isinstance(chunk, dict) else None


def make_http_client(
    base_url: str,
    connect_timeout_s: float,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
    )
