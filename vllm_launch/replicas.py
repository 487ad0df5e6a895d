"""Several vLLM replicas behind vllm-router (`serve --replicas N`).

The router (the `vllm-router` package, vllm-project/router) listens where one vLLM would, and
routes with its `consistent_hash` policy: requests that carry the same `X-Session-ID` header
land on the same replica, so a session's warm-ups and its final request meet the same KV
cache. Replica `i` listens on `replica_base_port + i` and publishes its KV events on
`kv_events_port + 2 i` (replay on the next port). Every process is stopped with the set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vllm_launch.engine_env import EngineEnv
from vllm_launch.errors import LaunchError
from vllm_launch.server import ChildProcess, EngineProcess, ServeOptions, port_in_use
from vllm_launch.signals import stop_groups

ROUTER_POLICY = "consistent_hash"
# A dead replica is found by the router's health checks and circuit breaker; these make that
# take seconds rather than the defaults' minute, and keep its retries from hiding it.
ROUTER_FAULT_ARGS = (
    "--health-check-interval-secs", "2",
    "--health-failure-threshold", "2",
    "--cb-failure-threshold", "3",
    "--cb-timeout-duration-secs", "30",
    "--retry-max-retries", "2",
)  # fmt: skip


@dataclass(frozen=True)
class ReplicaPlan:
    opts: ServeOptions  # the router's host and port; the replicas' model and flags
    replicas: int
    replica_base_port: int
    router_metrics_port: int

    def replica_options(self) -> list[ServeOptions]:
        events = self.opts.kv_events_port
        return [
            dataclasses.replace(
                self.opts,
                port=self.replica_base_port + i,
                kv_events_port=None if events is None else events + 2 * i,
            )
            for i in range(self.replicas)
        ]

    @property
    def replica_urls(self) -> list[str]:
        return [opts.base_url for opts in self.replica_options()]


def router_program() -> str:
    """The `vllm-router` executable installed beside this Python, or on the PATH."""
    beside = Path(sys.executable).parent / "vllm-router"
    found = str(beside) if beside.exists() else shutil.which("vllm-router")
    if found is None:
        raise LaunchError("vllm-router is not installed (pip install vllm-router)")
    return found


class RouterProcess(ChildProcess):
    name = "vllm-router"

    def __init__(self, plan: ReplicaPlan, log_path: Path) -> None:
        super().__init__(log_path, startup_timeout_s=120.0)
        self.plan = plan

    @property
    def base_url(self) -> str:
        return self.plan.opts.base_url

    def command(self) -> list[str]:
        opts = self.plan.opts
        return [
            router_program(), "--host", opts.host, "--port", str(opts.port),
            "--worker-urls", *self.plan.replica_urls,
            "--policy", ROUTER_POLICY,
            "--prometheus-host", opts.host,
            "--prometheus-port", str(self.plan.router_metrics_port),
            "--request-timeout-secs", "600",
            *ROUTER_FAULT_ARGS,
        ]  # fmt: skip

    def check_can_start(self) -> None:
        for port in (self.plan.opts.port, self.plan.router_metrics_port):
            if port_in_use(self.plan.opts.host, port):
                raise LaunchError(f"port {port} on {self.plan.opts.host} is already in use")
        router_program()


@contextlib.contextmanager
def serving_replicas(
    engine: EngineEnv, plan: ReplicaPlan, log_dir: Path
) -> Iterator[RouterProcess]:
    """Start the replicas (at once: they load side by side), then the router; stop them all."""
    replicas = [
        EngineProcess(engine, opts, log_dir / f"vllm-{opts.port}.log")
        for opts in plan.replica_options()
    ]
    router = RouterProcess(plan, log_dir / f"vllm-router-{plan.opts.port}.log")
    with contextlib.ExitStack() as stack:
        stack.callback(stop_all, replicas)
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        yield stack.enter_context(router)


def stop_all(processes: list[EngineProcess], grace_s: float = 5.0) -> None:
    """Stop the replicas together: one grace period for all, not one each."""
    running = [process.process for process in processes if process.process is not None]
    for process in processes:
        process.process = None
    stop_groups(running, grace_s)
