"""Start vLLM for the orchestrator (or the eval) unless one already answers at its URL."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from urllib.parse import urlsplit

from orchestrator.settings import Settings
from vllm_launch.engine_env import detect_device, ensure_engine_env
from vllm_launch.model import prepare_model, resolve_model, served_name
from vllm_launch.replicas import ReplicaPlan, serving_replicas
from vllm_launch.server import EngineProcess, ServeOptions, answers, build_command


def placement(settings: Settings, replicas: int = 1) -> ReplicaPlan:
    """Where `launched_vllm` puts vLLM (or its replicas and their router): at the settings'
    URL, the replicas on the ports above it (as `vllm_launch serve --replicas` does)."""
    url = urlsplit(settings.vllm_base_url)
    port = url.port or 8001
    opts = ServeOptions(model="", served_model_name="", host=url.hostname or "127.0.0.1", port=port)
    return ReplicaPlan(opts, replicas, port + 100, port + 1000)


def with_kv_events(settings: Settings, replicas: int = 1) -> Settings:
    """The settings of an orchestrator that launches vLLM: it follows the KV events that
    `vllm_launch` turns on (unless other endpoints are set), and knows the replicas behind a
    router (whose own events it does not follow: sessions reset their belief on a failure)."""
    if replicas > 1:
        urls = placement(settings, replicas).replica_urls
        return settings.model_copy(update={"vllm_replica_urls": urls})
    if settings.kv_events_url is not None:
        return settings
    opts = placement(settings).opts
    assert opts.kv_events_urls is not None
    events, replay = opts.kv_events_urls
    return settings.model_copy(update={"kv_events_url": events, "kv_events_replay_url": replay})


@contextlib.contextmanager
def launched_vllm(
    settings: Settings, enforce_eager: bool, extra_args: tuple[str, ...] = (), replicas: int = 1
) -> Iterator[list[str] | None]:
    """Start vLLM at `settings.vllm_url` unless one already answers there (with `replicas` >
    1, that many behind vllm-router there); yields its flags (None for a vLLM that was
    already running)."""
    if answers(settings.vllm_base_url):
        print(f"Using the vLLM already answering at {settings.vllm_base_url}")
        yield None
        return
    resolve_model(settings.model)
    url = urlsplit(settings.vllm_base_url)
    device = detect_device()
    engine = ensure_engine_env(settings.data_dir, device)
    model = prepare_model(settings.model, settings.data_dir, engine)
    opts = ServeOptions(
        model=model,
        served_model_name=served_name(settings.model, model),
        device=device,
        host=url.hostname or "127.0.0.1",
        port=url.port or 8001,
        block_size=settings.block_size,
        enforce_eager=enforce_eager,
        extra_args=extra_args,
    )
    if replicas > 1:
        plan = dataclasses.replace(placement(settings, replicas), opts=opts)
        print(f"Starting {replicas} vLLM replicas ({device}) behind vllm-router", flush=True)
        with serving_replicas(engine, plan, settings.data_dir / "logs"):
            print(f"vllm-router ready at {opts.base_url}", flush=True)
            yield build_command(engine, opts)[3:]
        return
    process = EngineProcess(engine, opts, settings.vllm_log_path)
    print(f"Starting vLLM ({device}); log: {process.log_path}", flush=True)
    with process:
        print(f"vLLM ready at {opts.base_url}", flush=True)
        yield build_command(engine, opts)[3:]  # the flags after `python -m <module>`
