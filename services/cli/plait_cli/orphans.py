"""Servers a killed embedded stack left running on its data, found by their pid files and stopped.

A process counts as a leftover only when its pid file names it and its command line names this
data directory (PostgreSQL's ``-D DIR``, nats-server's ``-c DIR/nats-server.conf``): a PID reused by
any other process is never signalled, and its stale pid file is removed instead.
Called only while holding the stack's lock, so no live stack owns these servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from plait.errors import PlaitError

STOP_TIMEOUT = 30.0  # seconds from the polite signal to SIGKILL
_POLL = 0.05


def stop_leftover_servers(data: Path) -> list[str]:
    """Stop the PostgreSQL and nats-server left running on ``data`` (PLAIT_HOME/data); what was stopped."""
    stopped = []
    postgres_dir = (data / "postgres").absolute()
    pid = _pid_in(postgres_dir / "postmaster.pid")
    if pid is not None:
        if _runs(pid, "postgres", ["-D", str(postgres_dir)]):
            _stop(pid, signal.SIGINT, "PostgreSQL")  # a fast shutdown; it removes postmaster.pid itself
            stopped.append(f"PostgreSQL (PID {pid})")
        elif _command_line(pid) is not None or not _exists(pid):
            (postgres_dir / "postmaster.pid").unlink(missing_ok=True)
    nats_dir = (data / "nats").absolute()
    for ports_file in nats_dir.glob("nats-server_*.ports"):
        pid = _number(ports_file.stem.removeprefix("nats-server_"))
        if pid is not None and _runs(pid, "nats-server", ["-c", str(nats_dir / "nats-server.conf")]):
            _stop(pid, signal.SIGTERM, "nats-server")
            stopped.append(f"nats-server (PID {pid})")
        ports_file.unlink(missing_ok=True)
    return stopped


def _pid_in(path: Path) -> int | None:
    try:
        first_line = path.read_text().partition("\n")[0]
    except OSError:
        return None
    return _number(first_line.strip())


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _runs(pid: int, program: str, arguments: list[str]) -> bool:
    """Whether ``pid`` runs ``program`` with ``arguments`` next to each other on its command line."""
    argv = _command_line(pid)
    if not argv or Path(argv[0]).name != program:
        return False
    width = len(arguments)
    return any(argv[i : i + width] == arguments for i in range(1, len(argv) - width + 1))


def _command_line(pid: int) -> list[str] | None:
    """The process's arguments; None when it does not exist or cannot be read."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return proc.read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            return None
    shown = subprocess.run(["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)  # noqa: S603, S607  'ps' of the system, a process id as argument, no shell
    return shown.stdout.split() if shown.returncode == 0 else None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        pass
    return True


def _stop(pid: int, polite: signal.Signals, what: str) -> None:
    """``polite``, then SIGKILL after ``STOP_TIMEOUT``; returns once the process is gone."""
    try:
        os.kill(pid, polite)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid):  # not our child: nothing to wait on but its existence
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_TIMEOUT
            time.sleep(_POLL)
    except ProcessLookupError:
        return
    except PermissionError:
        raise PlaitError(
            f"{what} (PID {pid}) of an earlier stack still runs and may not be stopped by this user: stop it"
        ) from None


def _alive(pid: int) -> bool:
    """Running: a zombie (exited, its parent not told yet) is not."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    return _exists(pid)
