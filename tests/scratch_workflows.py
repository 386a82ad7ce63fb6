"""Tasks that make temporary files, for tests/test_attempt_scratch.py and tests/faults/test_executor_folders_kill.py."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from plait import File, task, workflow


@task
def leave_temporary_files(name: str) -> list[str]:
    """Make a temporary folder with a file in it and leave it; say where, and where a subprocess's temporary files
    go."""
    folder = tempfile.mkdtemp(prefix=f"{name}-")
    (Path(folder) / "note.txt").write_text(name)
    child = [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"]
    return [folder, subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip()]


@workflow
def leaves_temporary_files(name: str) -> list[str]:
    return leave_temporary_files(name=name)


@task
def write_temporary_file(text: str) -> File:
    path = Path(tempfile.mkdtemp()) / "text.txt"
    path.write_text(text)
    return File(str(path))


@task
def read_file(file: File) -> str:
    return Path(file.path).read_text()


@workflow
def passes_a_temporary_file(text: str) -> str:
    return read_file(file=write_temporary_file(text=text))


@task(system_retries=0)
def die_after_temporary_files(note: str) -> int:
    """Make a temporary folder, write where to ``note``, and end the worker process abruptly."""
    Path(note).write_text(tempfile.mkdtemp(prefix="dying-"))
    os._exit(3)


@workflow
def dies_after_temporary_files(note: str) -> int:
    return die_after_temporary_files(note=note)


@task
def hold_temporary_files(note: str, seconds: float) -> str:
    """Make a temporary folder, write where to ``note`` (once whole: renamed into place), then run for ``seconds``."""
    folder = tempfile.mkdtemp(prefix="held-")
    Path(f"{note}.new").write_text(folder)
    os.rename(f"{note}.new", note)
    time.sleep(seconds)
    return folder


@workflow
def holds_temporary_files(note: str, seconds: float) -> str:
    return hold_temporary_files(note=note, seconds=seconds)


async def until_noted(note: str, timeout: float = 60.0) -> str:
    """What a task wrote to ``note`` (in a worker process: polled)."""
    with anyio.fail_after(timeout):
        while True:
            if await anyio.Path(note).exists():
                return await anyio.Path(note).read_text()
            await anyio.sleep(0.02)
