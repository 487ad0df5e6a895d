"""`python -m orchestrator`: serve the app; with `--launch-vllm`, start vLLM first, stop it after.

Set-up failures (bad settings, port in use, model, engine, database) end with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import uvicorn
from pydantic import ValidationError

from orchestrator.app import create_app
from orchestrator.errors import SetupError
from orchestrator.settings import Settings
from vllm_launch.engine_env import detect_device, ensure_engine_env
from vllm_launch.errors import LaunchError
from vllm_launch.model import prepare_model, resolve_model, served_name
from vllm_launch.server import EngineProcess, ServeOptions, answers, port_in_use


@contextlib.contextmanager
def launched_vllm(settings: Settings, enforce_eager: bool) -> Iterator[None]:
    """Start vLLM at `settings.vllm_url` unless one already answers there."""
    if answers(settings.vllm_base_url):
        print(f"Using the vLLM already answering at {settings.vllm_base_url}")
        yield
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
    )
    process = EngineProcess(engine, opts, settings.data_dir / "logs" / f"vllm-{opts.port}.log")
    print(f"Starting vLLM ({device}); log: {process.log_path}", flush=True)
    with process:
        print(f"vLLM ready at {opts.base_url}", flush=True)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description=__doc__)
    parser.add_argument("--launch-vllm", action="store_true", help="start vLLM if none answers")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without compilation")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        first = error.errors()[0]
        print(f"error: setting {first['loc'][0]}: {first['msg']}", file=sys.stderr)
        return 2
    try:
        if port_in_use(settings.host, settings.port):
            raise SetupError(f"port {settings.port} on {settings.host} is already in use")
        with launched_vllm(settings, args.enforce_eager) if args.launch_vllm else _nothing():
            print(f"Orchestrator at http://{settings.host}:{settings.port}", flush=True)
            logging.getLogger("uvicorn.error").addFilter(OneLineSetupErrors())
            uvicorn.run(create_app(settings), host=settings.host, port=settings.port)
    except (SetupError, LaunchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except SystemExit as exit_:  # uvicorn exits 3 when the app's start-up failed
        return int(exit_.code or 0)
    return 0


class OneLineSetupErrors(logging.Filter):
    """Turn uvicorn's traceback of a failed start-up into the one line of our SetupError."""

    marker = f"{SetupError.__module__}.{SetupError.__qualname__}: "

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if self.marker in text:
            record.msg, record.args = text.rsplit(self.marker, 1)[1].strip(), ()
        return "Application startup failed" not in text


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    raise SystemExit(main())
