"""vllm_launch.signals: SIGINT, SIGTERM and SIGHUP end a command cleanly, and the process
groups it spawned end with it (a `sleep` stands in for an engine)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from vllm_launch.signals import Handler, exits_on_signals, signals_held

ROOT = Path(__file__).resolve().parents[2]

# A command that starts an "engine" the way engines are started, and stops it on the way out.
COMMAND = """
import os, pathlib, sys, time
from vllm_launch.signals import exits_on_signals, spawn_group, stop_groups

@exits_on_signals
def main() -> int:
    with open(os.devnull, "wb") as log:
        child = spawn_group(["sh", "-c", sys.argv[2]], log)
    pathlib.Path(sys.argv[1]).write_text(str(child.pid))
    try:
        time.sleep(300)
    finally:
        pathlib.Path(sys.argv[1] + ".stopping").write_text("")
        stop_groups([child], grace_s=float(sys.argv[3]))
    return 0

raise SystemExit(main())
"""
SLEEP = "exec sleep 300"
DEAF_TO_TERM = "trap '' TERM; sleep 300"  # the shell and its sleep both ignore SIGTERM


def gone(pid: int) -> bool:
    """True once `pid` is no process, or a zombie nobody waits for any more."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def command(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    """Where the child's pid lands, and the started commands (killed after, should one hang)."""
    started: list[subprocess.Popen[bytes]] = []
    yield tmp_path / "child.pid", started
    for process in started:
        process.kill()
        process.wait()


def start(
    pid_file: Path, child: str, grace_s: float, sighup: Handler = signal.SIG_DFL
) -> subprocess.Popen[bytes]:
    """The command, started with SIGHUP as `sighup` whatever this run inherited (a test run
    under nohup inherits it ignored): SIG_DFL as from a terminal, SIG_IGN as under nohup."""
    script = textwrap.dedent(COMMAND)
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(pid_file), child, str(grace_s)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        restore_signals=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, sighup),
    )
    assert wait_for(pid_file.exists, 20), "the command did not start its child"
    time.sleep(0.2)  # the pid is written just before the command settles into its wait
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_the_command_and_its_child_group(
    command: tuple[Path, list[subprocess.Popen[bytes]]], signum: signal.Signals
) -> None:
    pid_file, started = command
    process = start(pid_file, SLEEP, grace_s=20)
    started.append(process)
    child = int(pid_file.read_text())
    assert os.getpgid(child) == child != os.getpgid(process.pid)  # a group of its own
    process.send_signal(signum)
    assert process.wait(timeout=10) == 130
    assert process.stderr is not None
    assert f"interrupted ({signum.name})" in process.stderr.read().decode()
    assert wait_for(lambda: gone(child), 5), "the child outlived the command"
    assert group_members(child) == []


def test_under_nohup_a_hangup_is_ignored(
    command: tuple[Path, list[subprocess.Popen[bytes]]],
) -> None:
    pid_file, started = command
    process = start(pid_file, SLEEP, grace_s=20, sighup=signal.SIG_IGN)
    started.append(process)
    child = int(pid_file.read_text())
    process.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert process.poll() is None
    assert not gone(child)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 130
    assert wait_for(lambda: gone(child), 5), "the child outlived the command"


def test_a_second_signal_during_the_stop_kills_at_once(
    command: tuple[Path, list[subprocess.Popen[bytes]]],
) -> None:
    pid_file, started = command
    process = start(pid_file, DEAF_TO_TERM, grace_s=120)  # SIGTERM alone would take 120 s
    started.append(process)
    child = int(pid_file.read_text())
    began = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert wait_for(Path(f"{pid_file}.stopping").exists, 10)
    time.sleep(0.5)  # the child has had its SIGTERM, and ignores it
    assert not gone(child)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 130
    assert time.monotonic() - began < 15
    assert wait_for(lambda: gone(child), 5), "the child outlived the hurried stop"
    assert group_members(child) == []


@pytest.mark.parametrize("child", [SLEEP, DEAF_TO_TERM])
def test_the_group_dies_with_a_command_killed_outright(
    command: tuple[Path, list[subprocess.Popen[bytes]]], child: str
) -> None:
    pid_file, started = command
    process = start(pid_file, child, grace_s=20)
    started.append(process)
    leader = int(pid_file.read_text())
    assert len(group_members(leader)) >= 2  # the child and its reaper
    process.kill()  # no clean-up runs: the reaper sees its pipe close
    process.wait()
    assert wait_for(lambda: group_members(leader) == [], 10), "the group outlived its parent"


def test_held_signals_are_raised_again_after() -> None:
    seen: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, record)
    try:
        with signals_held() as arrived:
            os.kill(os.getpid(), signal.SIGTERM)
            assert wait_for(lambda: arrived == [signal.SIGTERM], 2)
            assert seen == []
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is record
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_exits_on_signals_puts_the_handlers_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    @exits_on_signals
    def main() -> int:
        assert signal.getsignal(signal.SIGTERM) not in (before[signal.SIGTERM], signal.SIG_IGN)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted long before
        return 0

    began = time.monotonic()
    assert main() == 130
    assert time.monotonic() - began < 4
    after = {s: signal.getsignal(s) for s in before}
    assert after == before
