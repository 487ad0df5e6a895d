"""Talking to vLLM: one shared `httpx.AsyncClient`; errors mapped once to the service's own.

Every streamed request to vLLM (each final, a speculation, its continuation) goes through
`VLLMClient.open`: the status is checked (an error status raises `errors.upstream_error`,
the one reading of vLLM's error bodies), and `VLLMStream.chunks` reads the event stream
with `httpx-sse` (an error event raises the same way; a stall or a drop becomes
UpstreamTimeout / UpstreamUnavailable). Every failure is told to `on_error` (the metrics).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from orchestrator.core.engine.salt import ROUTE_HEADER
from orchestrator.errors import (
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    upstream_error,
)

log = logging.getLogger(__name__)

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
        if response.status_code >= 400:
            raise self.failed(upstream_error(response.status_code, response.content))
        return response

    async def open(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> VLLMStream:
        """POST `body` to `path` and return the answer, its status checked: the one way a
        streamed request goes to vLLM (close the `VLLMStream`, or use `async with`)."""
        try:
            request = self.http.build_request("POST", path, json=body, headers=headers)
        except ValueError:  # NaN or Infinity: Python's JSON reads them, JSON itself has none
            raise InvalidRequest(
                "the body holds a number JSON does not allow (NaN or Infinity)"
            ) from None
        response = await self.send(request, stream=True)
        if response.status_code < 400:
            return VLLMStream(response, self)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        log.log(level, "vLLM answered %d to %s", response.status_code, path)
        raise self.failed(upstream_error(response.status_code, content))

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
        async with await self.open("/v1/completions", payload, headers) as stream:
            async for chunk in stream.chunks():
                yield chunk


class VLLMStream:
    """vLLM's answer to one request, its status checked: `chunks()` when it streams, `read()`
    when not; `aclose()` (or `async with`) closes it, and vLLM aborts what is unfinished."""

    def __init__(self, response: httpx.Response, client: VLLMClient) -> None:
        self.response = response
        self.client = client

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The JSON of each event (`[DONE]` and empty events left out); an error event, a
        stream that is not SSE, a stall or a drop raises an UpstreamError."""
        try:
            async for event in EventSource(self.response).aiter_sse():
                if event.data and event.data != "[DONE]":
                    chunk = parsed_event(event.data)
                    if chunk is not None:
                        yield chunk
        except UpstreamError as error:
            raise self.client.failed(error) from None
        except SSEError as error:
            raise self.client.failed(UpstreamError(f"vLLM did not stream: {error}")) from None
        except httpx.TimeoutException as error:
            stalled = UpstreamTimeout("vLLM stalled in the middle of a stream")
            raise self.client.failed(stalled) from error
        except httpx.TransportError as error:
            dropped = UpstreamUnavailable("vLLM dropped the stream")
            raise self.client.failed(dropped) from error

    async def read(self) -> bytes:
        """The whole body of an answer that is not streamed."""
        try:
            return await self.response.aread()
        except httpx.TimeoutException as error:
            raise self.client.failed(UpstreamTimeout("vLLM did not finish its answer")) from error
        except httpx.TransportError as error:
            failure = UpstreamUnavailable("vLLM dropped the answer")
            raise self.client.failed(failure) from error

    async def aclose(self) -> None:
        await self.response.aclose()

    async def __aenter__(self) -> VLLMStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def upstream_headers(request_id: str | None, route: str | None) -> dict[str, str]:
    headers = {"X-Request-Id": request_id} if request_id else {}
    return headers | ({ROUTE_HEADER: route} if route else {})


def parsed_event(data: str) -> dict[str, Any] | None:
    """One event's JSON object; an error event raises (`errors.upstream_error`)."""
    try:
        chunk = json.loads(data)
    except ValueError:
        raise UpstreamError(f"vLLM sent an event that is not JSON: {data[:200]}") from None
    if isinstance(chunk, dict) and "error" in chunk:
        raise upstream_error(None, data)
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
