"""The one way tests and benchmarks run an ASGI app (the orchestrator, a fake vLLM) on uvicorn on
a free port: in a thread of its own (`serve_in_thread`), or as a task of the running event loop
(`serve`, and `Upstream`, which can be killed like a crashed process and started again)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class StartupFailed(RuntimeError):
    """The app's lifespan start-up raised: the message is its exception's, in one line."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def bound(port: int = 0) -> socket.socket:
    """A listening socket's socket on loopback (a free port unless `port`), reusable at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class QuietServer(uvicorn.Server):
    """uvicorn that leaves the caller's signal handlers (pytest's, the benchmark's) alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_for(
    app: ASGIApp, *, websockets: bool = True, lifespan: bool = True, log_level: str = "warning"
) -> QuietServer:
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=log_level,
        access_log=False,
        ws="websockets-sansio" if websockets else "none",
        lifespan="on" if lifespan else "off",
        timeout_graceful_shutdown=2,
    )
    return QuietServer(config)


# --- in a thread --------------------------------------------------------------------------------


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


def run_quietly(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn exits its thread with SystemExit when the start-up fails: the caller says why.
    `run` sets up uvicorn's event loop (uvloop where installed), as a served app would have."""
    with contextlib.suppress(SystemExit):
        server.run(sockets=[sock])


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, timeout_s: float = 60.0) -> Iterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) while uvicorn serves `app` in a thread."""
    sock = bound()
    port = sock.getsockname()[1]
    caught = CatchStartup(app)
    server = server_for(caught)
    thread = threading.Thread(target=run_quietly, args=(server, sock), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if caught.error is not None or not thread.is_alive() or time.monotonic() > deadline:
            thread.join(timeout=5)
            sock.close()
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
        sock.close()


# --- in the running event loop ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, *, websockets: bool = False) -> AsyncIterator[str]:
    """Serve `app` on a free port as a task of the running loop; yield its base URL."""
    sock = bound()
    port = sock.getsockname()[1]
    server = server_for(app, websockets=websockets, lifespan=websockets)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if task.done():
                task.result()  # raises what made the start fail
                raise RuntimeError("uvicorn exited during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        sock.close()


class Upstream:
    """`app` on uvicorn at a fixed port in the running loop; `kill()` and `start()` again."""

    def __init__(self, app: ASGIApp, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.server: QuietServer | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, within_s: float = 5.0) -> None:
        assert self.server is None, "already running"
        sock = bound(self.port)
        server = server_for(self.app, websockets=False, lifespan=False, log_level="critical")
        self.server = server
        self.task = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = time.monotonic() + within_s
        while not server.started:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within_s} s waiting for upstream")
            await asyncio.sleep(0.01)

    async def kill(self) -> None:
        """Die like a crashed process: no new connections, every open one reset at once."""
        server, task = self.server, self.task
        assert server is not None, "not running"
        assert task is not None
        for listener in server.servers:
            listener.close()
        for connection in list(server.server_state.connections):
            connection.transport.abort()
        server.force_exit = server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        self.server = self.task = None

    async def stop(self) -> None:
        if self.server is not None:
            await self.kill()

    @property
    def open_connections(self) -> int:
        return len(self.server.server_state.connections) if self.server else 0
