"""Each attempt's own temporary folder, in a local worker: what its task makes with ``tempfile`` (and its
subprocesses, through ``TMPDIR``) goes there, and the executor removes it once the attempt's outputs are stored (a
``File`` it returned from there is uploaded first). A warm worker runs thousands of attempts: none leaves files
behind."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from pathlib import Path

import anyio.to_thread

_current: ContextVar[str | None] = ContextVar("plait_attempt_scratch", default=None)


def current_scratch() -> str | None:
    """The temporary folder of the attempt being run in this task, if it has one."""
    return _current.get()


class Scratch:
    """The attempts' temporary folders, under ``root`` (a private folder of the executor's)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._names = itertools.count()

    @contextlib.asynccontextmanager
    async def attempt(self) -> AsyncIterator[str]:
        """An attempt's folder, named here and made by its worker; removed, with all it holds, on exit."""
        path = os.path.join(self.root, str(next(self._names)))
        token = _current.set(path)
        try:
            yield path
        finally:
            _current.reset(token)
            with anyio.CancelScope(shield=True):
                await _remove(path)


async def _remove(path: str) -> None:
    try:
        os.rmdir(path)  # most attempts leave it empty, or never made it
    except FileNotFoundError:
        pass
    except OSError:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))


@contextlib.contextmanager
def temporary_files_in(path: str | None) -> Iterator[None]:
    """In a worker process, while an attempt runs: ``tempfile`` and ``TMPDIR`` name ``path`` (made here); both put
    back after."""
    if path is None:
        yield
        return
    os.makedirs(path, exist_ok=True)
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = path, path
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
