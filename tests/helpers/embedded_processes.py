"""The embedded stack's processes as tests see them from outside: ``plait`` commands run as child
processes on a PLAIT_HOME, and the processes (servers, services) found running on it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def processes_using(home: Path) -> list[int]:
    """PIDs of the processes started for the embedded stack in ``home``: its servers name it on their
    command line, the services and their workers carry it in their environment (PLAIT_HOME)."""
    needle = str(home).encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() or needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until_gone(home: Path, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_using(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def plait(args: list[str], home: Path, extra_env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PLAIT_HOME": str(home), "PLAIT_NATS_URL": "", "PLAIT_DATABASE_URL": "", **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "plait_cli.main", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by whoever adopted it, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def parent_pid(pid: int) -> int | None:
    """The parent's PID. Services are children of the plait command; a process their executor is forking
    carries the executor's command line until it execs, so the command line alone would count it twice."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def wait_for_dev(dev: subprocess.Popen[str], home: Path, timeout: float = 60) -> None:
    """Until ``plait dev`` has written dev.json (its stack is up); fails if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while not (home / "dev.json").exists():  # no event to await from another process: poll its file
        assert dev.poll() is None, dev.communicate()[1]
        assert time.monotonic() < deadline, "plait dev did not start"
        time.sleep(0.05)
