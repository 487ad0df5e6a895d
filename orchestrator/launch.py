"""Start vLLM for the orchestrator (or the eval) unless one already answers at its URL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

from orchestrator.settings import Settings
from vllm_launch.engine_env import detect_device, ensure_engine_env
from vllm_launch.model import prepare_model, resolve_model, served_name
from vllm_launch.server import EngineProcess, ServeOptions, answers, build_command


def with_kv_events(settings: Settings) -> Settings:
    """The settings of an orchestrator that launches vLLM: it follows the KV events that
    `vllm_launch` turns on (unless other endpoints are set)."""
    if settings.kv_events_url is not None:
        return settings
    url = urlsplit(settings.vllm_base_url)
    opts = ServeOptions(model="", served_model_name="", host=url.hostname or "127.0.0.1")
    assert opts.kv_events_urls is not None
    events, replay = opts.kv_events_urls
    return settings.model_copy(update={"kv_events_url": events, "kv_events_replay_url": replay})


@contextlib.contextmanager
def launched_vllm(
    settings: Settings, enforce_eager: bool, extra_args: tuple[str, ...] = ()
) -> Iterator[list[str] | None]:
    """Start vLLM at `settings.vllm_url` unless one already answers there; yields its flags
    (None for a vLLM that was already running)."""
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
    process = EngineProcess(engine, opts, settings.vllm_log_path)
    print(f"Starting vLLM ({device}); log: {process.log_path}", flush=True)
    with process:
        print(f"vLLM ready at {opts.base_url}", flush=True)
        yield build_command(engine, opts)[3:]  # the flags after `python -m <module>`
