"""Signals as a clean exit, and engine process groups that end on every exit path.

A command that starts engines (vLLM, vllm-router) wraps its main in `exits_on_signals`:
SIGTERM and SIGHUP then raise KeyboardInterrupt in the main thread, as Ctrl-C does, so every
`with` and `finally` on the way out runs and stops what it started. Engines are spawned by
`spawn_group`: in a process group of their own (a Ctrl-C at the terminal reaches this process
only, which stops them in order), with a reaper that ends the group should this process die
without stopping them (killed outright). `stop_groups` ends them: SIGTERM to each group,
SIGKILL after a grace period. A further signal during that shortens the grace (SIGKILL at
once) but never cuts the sweep short; it is raised again once the engines are gone.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any, ParamSpec

P = ParamSpec("P")
Handler = Callable[[int, FrameType | None], Any] | int | None
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # made to act as Ctrl-C
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # noted while engines stop
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_exit() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP raise KeyboardInterrupt, and SIGINT does even where it was
    inherited ignored (a job started in the background); the handlers before, after."""
    if not in_main_thread():
        yield
        return
    previous: dict[signal.Signals, Handler] = {s: signal.getsignal(s) for s in HELD_SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in EXIT_SIGNALS:
        if previous[signum] is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            signal.signal(signum, _interrupt)
    try:
        yield
    finally:
        _restore(previous)


def exits_on_signals(main: Callable[P, int]) -> Callable[P, int]:
    """`main` with `signals_exit` in place; an interrupt ends it with code 130 and one line."""

    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        with signals_exit():
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt as interrupt:
                name = interrupt.args[0] if interrupt.args else "SIGINT"
                print(f"interrupted ({name})", file=sys.stderr)
                return INTERRUPTED

    return wrapper


def _restore(handlers: dict[signal.Signals, Handler]) -> None:
    for signum, handler in handlers.items():
        if handler is not None:  # None: set outside Python, cannot be put back
            signal.signal(signum, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[list[int]]:
    """Within: SIGINT, SIGTERM and SIGHUP are noted in the yielded list, not acted on. After,
    the handlers before are back and the first signal noted is raised again under them."""
    arrived: list[int] = []
    if not in_main_thread():
        yield arrived
        return

    def note(signum: int, frame: FrameType | None) -> None:
        arrived.append(signum)

    previous: dict[signal.Signals, Handler] = {s: signal.signal(s, note) for s in HELD_SIGNALS}
    try:
        yield arrived
    finally:
        _restore(previous)
        if arrived and previous[signal.Signals(arrived[0])] is not signal.SIG_IGN:
            signal.raise_signal(arrived[0])


# Runs in the engine's process group: once the pipe from the command that started the group
# closes (that command is gone, however it ended), SIGTERM to the group, then SIGKILL (itself
# included). Its own SIGTERM is ignored, so the sweep it starts is finished.
REAPER = """
import os, signal, sys, time
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(signum, signal.SIG_IGN)
sys.stdin.buffer.read()
os.killpg(0, signal.SIGTERM)
time.sleep(float(sys.argv[1]))
os.killpg(0, signal.SIGKILL)
"""
REAPER_GRACE_S = 5.0
_reapers: dict[int, subprocess.Popen[bytes]] = {}  # by the pid of the group's leader


def spawn_group(
    command: Sequence[str],
    log: IO[bytes],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `command` as the leader of a new process group, its output in
    `log`, with a reaper beside it that ends the group should this process die without
    stopping it (killed outright). vLLM's API server alone, told to stop (as Linux's
    parent-death signal would tell it), can leave its engine core running: the whole group
    has to go."""
    process = subprocess.Popen(
        list(command), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
        process_group=0,  # in this session (a reaper may join it), not this group
    )  # fmt: skip
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # the group already gone
        _reapers[process.pid] = subprocess.Popen(
            [sys.executable, "-I", "-c", REAPER, str(REAPER_GRACE_S)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=process.pid,
        )
    return process


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def stop_groups(processes: Sequence[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM to every group, wait until all leaders exit (at most `grace_s`, less if another
    signal arrives), then SIGKILL every group: a leader may exit before its own children
    (vLLM's engine core). Signals arriving meanwhile are raised again at the end."""
    with signals_held() as arrived:
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not arrived:
            if all(process.poll() is not None for process in processes):
                break
            time.sleep(0.05)
        for process in processes:
            _signal_group(process, signal.SIGKILL)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            _collect_reaper(process.pid)


def _collect_reaper(pid: int) -> None:
    """The group's reaper went with its SIGKILL: wait for it, close its pipe."""
    reaper = _reapers.pop(pid, None)
    if reaper is None:
        return
    if reaper.stdin is not None:
        reaper.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        reaper.wait(timeout=5)
