"""PLAIT_HOME as the embedded stack uses it: checked usable, locked by the one stack that runs on its data,
and where ``plait dev`` advertises its servers (dev.json) to other commands."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import msgspec

from plait.errors import PlaitError
from plait.settings import Settings
from plait_cli.orphans import stop_leftover_servers

DEV_FILE = "dev.json"
LOCK_FILE = "embedded.lock"
Report = Callable[[str], None]  # told each step of starting the stack, in a few words


class StackInfo(msgspec.Struct, frozen=True):
    """Where a running stack is, as ``plait dev`` advertises it to other commands."""

    nats_url: str
    database_url: str
    pid: int


@contextlib.contextmanager
def exclusive(home: Path, report: Report) -> Iterator[None]:
    """Hold PLAIT_HOME's lock for a stack's life; first clear what a killed stack left (a stale dev.json,
    servers still running on the data). The lock file names its holder's PID."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlaitError(_busy(home, lock)) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        (home / DEV_FILE).unlink(missing_ok=True)  # the plait dev that wrote it is gone: it held this lock
        leftovers = stop_leftover_servers(home / "data")
        if leftovers:
            report(f"stopped {' and '.join(leftovers)}, left running by a killed stack")
        yield


def _busy(home: Path, lock: IO[str]) -> str:
    """Who holds PLAIT_HOME's lock, and what to do about it."""
    try:
        dev = msgspec.json.decode((home / DEV_FILE).read_bytes(), type=StackInfo)
    except (OSError, msgspec.DecodeError):
        lock.seek(0)
        holder = lock.read().strip() or "?"
        return (
            f"another plait command (PID {holder}) is running the embedded stack in {home}: wait for it to end, "
            "keep `plait dev` running for commands to share, or set PLAIT_HOME to another folder"
        )
    return (
        f"plait dev (PID {dev.pid}) is already running for {home}: other commands use it; stop it (Ctrl-C) "
        "before starting another, or set PLAIT_HOME to another folder"
    )


def _held(lock_path: Path) -> bool:
    """Whether a stack holds the lock (a PID alone could have been reused since its holder died)."""
    try:
        with open(lock_path, "rb") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except FileNotFoundError:
        return False


def running_dev_stack(settings: Settings) -> StackInfo | None:
    """The stack a live ``plait dev`` advertises, if there is one; a dev.json its writer left behind
    when it was killed is removed."""
    path = settings.home_path / DEV_FILE
    try:
        info = msgspec.json.decode(path.read_bytes(), type=StackInfo)
    except (FileNotFoundError, msgspec.DecodeError):
        return None
    if not _held(settings.home_path / LOCK_FILE):
        path.unlink(missing_ok=True)
        return None
    return info


def advertise(settings: Settings, info: StackInfo) -> Path:
    path = settings.home_path / DEV_FILE
    path.write_bytes(msgspec.json.encode(info))
    return path


def usable_home(settings: Settings) -> Path:
    """PLAIT_HOME, made if missing; ``PlaitError`` saying what is wrong when it is not a folder this user can write."""
    home = settings.home_path
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not os.access(home, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        reason = "it is a file" if isinstance(exc, FileExistsError) else exc.strerror or str(exc)
        raise PlaitError(
            f"PLAIT_HOME {home} cannot hold plait's data ({reason}): set PLAIT_HOME to a folder you can write"
        ) from None
    return home
