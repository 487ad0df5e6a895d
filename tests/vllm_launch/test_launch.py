"""vllm_launch: the vLLM command line, model resolution, and the engine process's life cycle.

No real vLLM: the engine is a fake, an `EngineEnv` whose `bin/python` is a shell script that
runs a small Python script standing in for vLLM's OpenAI server (and its engine core).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vllm_launch.engine_env import MODEL_WHEEL, EngineEnv, packages_for
from vllm_launch.errors import LaunchError
from vllm_launch.model import resolve_model
from vllm_launch.server import EngineProcess, ServeOptions, build_command

ROOT = Path(__file__).resolve().parents[2]


# --- helpers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port this test holds bound (and listening), so nothing else can take it."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def options(port: int | None = None, **overrides: object) -> ServeOptions:
    fields: dict[str, object] = {"model": "org/model", "served_model_name": "model"}
    fields["port"] = free_port() if port is None else port
    fields.update(overrides)
    return ServeOptions(**fields)  # type: ignore[arg-type]


def fake_engine(tmp_path: Path, server_code: str, root: Path | None = None) -> EngineEnv:
    """An engine env whose `bin/python` runs `server_code` (with vLLM's arguments) instead."""
    script = tmp_path / "fake_vllm.py"
    script.write_text(textwrap.dedent(server_code))
    engine = EngineEnv(root=root or tmp_path / "engine")
    engine.python.parent.mkdir(parents=True)
    engine.python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    engine.python.chmod(0o755)
    return engine


def installed_fake_engine(data_dir: Path, server_code: str) -> None:
    """A fake cpu engine where `python -m vllm_launch` looks, marked installed (no pip)."""
    engine = fake_engine(data_dir, server_code, root=data_dir / "vllm-cpu-venv")
    engine.marker.write_text("\n".join((*packages_for("cpu"), MODEL_WHEEL)))


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


# Fake-server building blocks, joined into one script; the fakes get vLLM's argv.
IGNORE_SIGTERM = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
DEFAULT_SIGTERM = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
SLEEP_FOREVER = "import time\ntime.sleep(300)\n"


def write_pid(pid_file: Path) -> str:
    """The fake writes its own pid (the one Popen sees: the shell script execs Python)."""
    return f"import os, pathlib\npathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"


def engine_core(core_file: Path) -> str:
    """The fake spawns a grandchild, as vLLM's API server spawns its engine core."""
    return (
        "import pathlib, subprocess\n"
        "core = subprocess.Popen(['sleep', '300'])\n"
        f"pathlib.Path({str(core_file)!r}).write_text(str(core.pid))\n"
    )


SERVE_MODELS = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Models(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"object": "list", "data": []}' if self.path == "/v1/models" else b"{}"
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

PORT = int(sys.argv[sys.argv.index("--port") + 1])
HTTPServer(("127.0.0.1", PORT), Models).serve_forever()
"""


def is_gone(pid: int) -> bool:
    """True when no process `pid` runs (a zombie counts as gone: it only awaits its reaper)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not is_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for_file(path: Path, timeout_s: float = 10.0) -> int:
    """The pid a fake wrote to `path`, once it has."""
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the fake engine never wrote {path}")
        time.sleep(0.05)
    return int(path.read_text())


def cli_env(**settings: str) -> dict[str, str]:
    """The environment without the caller's PREFILL_* settings, plus `settings`."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("PREFILL_")}
    return {**clean, **settings}


def run_cli(module: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m module args` from the repo root, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=cli_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stderr_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed on stderr."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# --- build_command ---------------------------------------------------------------------------


def test_cpu_command_carries_the_product_flags() -> None:
    command = build_command(EngineEnv(Path("/env")), options(device="cpu"))
    assert command[:3] == ["/env/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    for flag in ("--enable-prefix-caching", "--enable-prompt-tokens-details"):
        assert flag in command
    joined = " ".join(command)
    assert "--scheduling-policy priority" in joined
    assert "--block-size 32" in joined
    assert "--dtype float32" in joined
    assert "--enforce-eager" not in command


def test_cpu_engine_steps_are_kept_short_unless_the_user_sets_the_budget() -> None:
    cpu = " ".join(build_command(EngineEnv(Path("/env")), options(device="cpu")))
    gpu = " ".join(build_command(EngineEnv(Path("/env")), options(device="gpu")))
    assert "--max-num-batched-tokens 512 --long-prefill-token-threshold 128" in cpu
    assert "--max-num-batched-tokens" not in gpu
    own = ("--max-num-batched-tokens", "2048")
    mine = build_command(EngineEnv(Path("/env")), options(device="cpu", extra_args=own))
    assert mine.count("--max-num-batched-tokens") == 1
    assert mine[-2:] == list(own)


def test_enforce_eager_only_when_asked() -> None:
    command = build_command(EngineEnv(Path("/env")), options(enforce_eager=True))
    assert "--enforce-eager" in command


def test_gpu_block_size_defaults_to_16() -> None:
    command = " ".join(build_command(EngineEnv(Path("/env")), options(device="gpu")))
    assert "--block-size 16" in command
    assert "--dtype float32" not in command


@pytest.mark.parametrize("block_size", [16, 48])
def test_cpu_block_size_must_be_a_multiple_of_32(block_size: int) -> None:
    with pytest.raises(LaunchError, match="multiple of 32"):
        build_command(EngineEnv(Path("/env")), options(device="cpu", block_size=block_size))


# --- resolve_model ---------------------------------------------------------------------------


def test_no_model_means_the_default() -> None:
    assert resolve_model(None) is None


def test_unknown_model_is_refused() -> None:
    with pytest.raises(LaunchError) as error:
        resolve_model("nope")
    assert str(error.value).startswith("unknown model")


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=r"no config\.json"):
        resolve_model(str(tmp_path))


def test_model_folder_resolves_to_its_path(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())


def test_hub_id_is_kept() -> None:
    assert resolve_model("org/name") == "org/name"


# --- EngineProcess ---------------------------------------------------------------------------


def test_start_on_a_port_in_use_fails_before_spawning(tmp_path: Path, held_port: int) -> None:
    log = tmp_path / "logs" / "vllm.log"
    process = EngineProcess(fake_engine(tmp_path, SLEEP_FOREVER), options(held_port), log)
    with pytest.raises(LaunchError, match=f"port {held_port} .*already in use"):
        process.start()
    assert process.process is None
    assert not log.exists()


def test_missing_engine_interpreter_is_a_launch_error(tmp_path: Path) -> None:
    process = EngineProcess(EngineEnv(tmp_path / "no-venv"), options(), tmp_path / "vllm.log")
    with pytest.raises(LaunchError):
        process.start()
    assert process.process is None


def test_engine_that_exits_at_start_reports_code_and_log_tail(tmp_path: Path) -> None:
    engine = fake_engine(
        tmp_path,
        """
        import sys
        print("loading the model")
        print("ValueError: no such architecture")
        sys.exit(1)
        """,
    )
    with (
        pytest.raises(LaunchError, match="exited with code 1") as error,
        EngineProcess(engine, options(), tmp_path / "vllm.log"),
    ):
        pass
    assert "loading the model" in str(error.value)
    assert "ValueError: no such architecture" in str(error.value)


def test_stop_leaves_no_engine_process_behind(tmp_path: Path) -> None:
    pid_file, core_file = tmp_path / "server.pid", tmp_path / "core.pid"
    code = write_pid(pid_file) + engine_core(core_file) + SERVE_MODELS
    with EngineProcess(fake_engine(tmp_path, code), options(), tmp_path / "vllm.log") as process:
        assert process.process is not None
        server, core = process.process.pid, wait_for_file(core_file)
        assert wait_for_file(pid_file) == server
        assert not is_gone(server)
        assert not is_gone(core)
    assert process.process is None
    assert wait_gone(server), "the fake API server outlived stop()"
    assert wait_gone(core), "the fake engine core outlived stop()"


def test_engine_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    engine = fake_engine(tmp_path, write_pid(pid_file) + SLEEP_FOREVER)
    process = EngineProcess(engine, options(startup_timeout_s=2), tmp_path / "vllm.log")
    with pytest.raises(LaunchError, match="did not answer within 2 s"), process:
        pass
    assert process.process is None
    assert wait_gone(wait_for_file(pid_file)), "the silent engine outlived its time-out"


def test_engine_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    pid_file, core_file = tmp_path / "server.pid", tmp_path / "core.pid"
    # The engine core inherits the ignored SIGTERM: only the SIGKILL sweep ends either.
    code = IGNORE_SIGTERM + engine_core(core_file) + write_pid(pid_file) + SLEEP_FOREVER
    process = EngineProcess(fake_engine(tmp_path, code), options(), tmp_path / "vllm.log")
    process.start()
    try:
        server, core = wait_for_file(pid_file), wait_for_file(core_file)  # SIGTERM now ignored
    finally:
        process.stop(grace_s=1)
    assert wait_gone(server), "the engine ignoring SIGTERM outlived stop()"
    assert wait_gone(core), "its engine core outlived stop()"


def test_engine_core_outliving_its_server_is_swept(tmp_path: Path) -> None:
    pid_file, core_file = tmp_path / "server.pid", tmp_path / "core.pid"
    # The API server dies of SIGTERM at once; its engine core ignores SIGTERM.
    code = IGNORE_SIGTERM + engine_core(core_file) + DEFAULT_SIGTERM
    code += write_pid(pid_file) + SLEEP_FOREVER
    process = EngineProcess(fake_engine(tmp_path, code), options(), tmp_path / "vllm.log")
    process.start()
    try:
        server, core = wait_for_file(pid_file), wait_for_file(core_file)
    finally:
        process.stop(grace_s=5)
    assert wait_gone(server), "the fake API server outlived stop()"
    assert wait_gone(core), "the engine core outlived its API server's stop()"


# --- command lines ---------------------------------------------------------------------------


def test_serve_with_an_unknown_model_fails_in_one_line(tmp_path: Path) -> None:
    done = run_cli("vllm_launch", "--data-dir", str(tmp_path), "--model", "nope", "serve")
    assert done.returncode == 1
    assert stderr_line(done).startswith("error: unknown model")


def test_prepare_model_with_a_folder_without_config_fails_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    args = ("--data-dir", str(tmp_path), "--model", str(empty), "prepare-model")
    done = run_cli("vllm_launch", *args)
    assert done.returncode == 1
    assert stderr_line(done).startswith("error: model folder")
    assert "config.json" in done.stderr


def test_serve_reports_an_engine_that_exits_at_start(tmp_path: Path) -> None:
    installed_fake_engine(tmp_path, "print('CUDA out of memory')\nraise SystemExit(1)\n")
    args = ["--data-dir", str(tmp_path), "--device", "cpu", "--model", str(model_folder(tmp_path))]
    done = run_cli("vllm_launch", *args, "serve", "--port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.startswith("error: vLLM exited with code 1 during start-up")
    assert "CUDA out of memory" in done.stderr  # the log's tail follows the error line


def test_serve_stops_the_engine_on_sigterm(tmp_path: Path) -> None:
    core_file = tmp_path / "core.pid"
    installed_fake_engine(tmp_path, engine_core(core_file) + SERVE_MODELS)
    args = ["--data-dir", str(tmp_path), "--device", "cpu", "--model", str(model_folder(tmp_path))]
    args += ["serve", "--port", str(free_port()), "--startup-timeout", "20"]
    serve = subprocess.Popen(
        [sys.executable, "-m", "vllm_launch", *args],
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        for line in serve.stdout:
            if line.startswith("vLLM ready"):
                break
        else:
            pytest.fail(f"serve exited with {serve.wait()} before vLLM was ready")
        core = wait_for_file(core_file)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
    finally:
        serve.kill()
        serve.wait()
    assert wait_gone(core), "serve left its engine core behind"


def test_orchestrator_on_a_port_in_use_fails_in_one_line(held_port: int) -> None:
    done = run_cli("orchestrator", PREFILL_PORT=str(held_port), PREFILL_ENABLE_DATABASE="false")
    assert done.returncode == 1
    line = stderr_line(done)
    assert line.startswith(f"error: port {held_port} ")
    assert line.endswith("already in use")


def test_orchestrator_with_a_bad_port_setting_fails_in_one_line() -> None:
    done = run_cli("orchestrator", PREFILL_PORT="abc", PREFILL_ENABLE_DATABASE="false")
    assert done.returncode == 2
    assert stderr_line(done).startswith("error: setting port")
