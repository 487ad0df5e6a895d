"""Run an ASGI app (the orchestrator, a fake vLLM) on uvicorn on a free port, in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class StartupFailed(RuntimeError):
    """The app's lifespan start-up raised: the message is its exception's, in one line."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class CatchStartup:
    """Keeps the exception of a failing start-up instead of letting uvicorn log its
    traceback: the caller says what failed in one line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.error: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, quiet_send)
        except Exception as error:  # reported by serve_in_thread
            self.error = error


def run_quietly(server: uvicorn.Server) -> None:
    """uvicorn exits its thread with SystemExit when the start-up fails: the caller says why."""
    with contextlib.suppress(SystemExit):
        server.run()


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, timeout_s: float = 60.0) -> Iterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) while uvicorn serves `app`."""
    port = free_port()
    caught = CatchStartup(app)
    config = uvicorn.Config(
        caught, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=run_quietly, args=(server,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if caught.error is not None or not thread.is_alive() or time.monotonic() > deadline:
            thread.join(timeout=5)
            why = str(caught.error).splitlines()[0] if caught.error else "no reason given"
            raise StartupFailed(f"the orchestrator did not start: {why}")
        time.sleep(0.02)
    interrupted = True
    try:
        yield f"http://127.0.0.1:{port}"
        interrupted = False
    finally:
        server.should_exit = True
        if interrupted:  # a few seconds for open connections, then without them
            thread.join(timeout=5)
            server.force_exit = True
        thread.join(timeout=30)
