"""Tasks the executor tests run in worker processes; module level, so a worker can import them by target."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import NamedTuple

import msgspec

from plait import task


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


class DivMod(NamedTuple):
    quotient: int
    remainder: int


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def divide(a: int, b: int) -> DivMod:
    return DivMod(*divmod(a, b))


@task
def fail(message: str) -> int:
    raise ValueError(message)


@task
def die(code: int) -> int:
    os._exit(code)


@task
def describe(point: Point, payload: bytes) -> str:
    return f"{point.x},{point.y}:{payload.decode()}"


@task
def mirror(point: Point, payload: bytes) -> Point:
    return Point(point.y + len(payload), point.x)


@task
def nothing() -> None:
    return None


@task
def wrong_type() -> int:
    return "not an int"  # type: ignore[return-value]


def _wait_for(path: str) -> str:
    while not os.path.exists(path):
        time.sleep(0.005)
    with open(path) as file:
        return file.read()


@task
def wait_for_file(path: str) -> str:
    """Runs until the test creates the file at ``path``, then returns its text."""
    return _wait_for(path)


@task
def announce_then_wait(path: str, announce_to: str) -> str:
    """Writes its process id to ``announce_to`` (its own output is captured), then runs until the file at ``path``
    exists."""
    with open(announce_to, "w") as announcement:
        print(f"running in {os.getpid()}", file=announcement, flush=True)
    return _wait_for(path)


@task(timeout=0.5)
def wait_for_file_briefly(path: str) -> str:
    return _wait_for(path)


@task
def move_and_change_environment(folder: str) -> str:
    """Move the worker into ``folder``, set a variable, remove PATH and add a root logging handler at DEBUG, as a
    careless task would."""
    os.chdir(folder)
    os.environ["PLAIT_TEST_LEFT_BY_A_TASK"] = "yes"
    del os.environ["PATH"]
    logging.getLogger().addHandler(logging.StreamHandler())
    logging.getLogger().setLevel(logging.DEBUG)
    return os.getcwd()


class Surroundings(msgspec.Struct, frozen=True):
    cwd: str
    left_by_a_task: str | None
    path_set: bool
    root_handlers: int
    root_level: int


@task
def surroundings() -> Surroundings:
    """What the task above changes, as this call finds it."""
    root = logging.getLogger()
    variable = os.environ.get("PLAIT_TEST_LEFT_BY_A_TASK")
    return Surroundings(os.getcwd(), variable, "PATH" in os.environ, len(root.handlers), root.level)


@task
def hold_memory(mib: int) -> int:
    """Hold ``mib`` MiB, written (so resident), for the call; the bytes held."""
    held = b"x" * (mib * 1024 * 1024)
    return len(held)


@task
def leave_threads(count: int) -> int:
    """Start ``count`` threads that never end, as a task that leaves a pool of threads behind."""
    never = threading.Event()
    for _ in range(count):
        threading.Thread(target=never.wait, daemon=True).start()
    return count


@task
def pause(seconds: float) -> float:
    """Runs for ``seconds``: an attempt longer than a short ack wait."""
    time.sleep(seconds)
    return seconds


def not_a_task() -> int:
    return 1
