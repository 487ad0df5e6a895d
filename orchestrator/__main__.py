"""`python -m orchestrator`: serve the app; with `--launch-vllm`, start vLLM first, stop it after.

Set-up failures (bad settings, port in use, model, engine, database) end with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

import uvicorn
from pydantic import ValidationError

from orchestrator.errors import SetupError
from orchestrator.launch import launched_vllm, with_kv_events
from orchestrator.logs import logging_config
from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from vllm_launch.errors import LaunchError
from vllm_launch.server import port_in_use
from vllm_launch.signals import exits_on_signals


@exits_on_signals
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description=__doc__)
    parser.add_argument("--launch-vllm", action="store_true", help="start vLLM if none answers")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without compilation")
    parser.add_argument(
        "--replicas", type=int, default=1, help="with --launch-vllm: N replicas behind vllm-router"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        first = error.errors()[0]
        where = f"setting {first['loc'][0]}: " if first["loc"] else "settings: "
        print(f"error: {where}{first['msg']}", file=sys.stderr)
        return 2
    try:
        if port_in_use(settings.host, settings.port):
            raise SetupError(f"port {settings.port} on {settings.host} is already in use")
        if args.launch_vllm:
            settings = with_kv_events(settings, args.replicas)
        launching = launched_vllm(settings, args.enforce_eager, replicas=args.replicas)
        with launching if args.launch_vllm else _nothing():
            print(f"Orchestrator at http://{settings.host}:{settings.port}", flush=True)
            logging.getLogger("uvicorn.error").addFilter(OneLineSetupErrors())
            uvicorn.run(
                create_app(settings),
                host=settings.host,
                port=settings.port,
                ws_max_size=settings.ws_max_message_bytes,
                log_config=logging_config(settings.log_format),
            )
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
