"""Private temporary folders an executor keeps while it serves (unpacked code bundles, running attempts' output, its
workers' temporary files).

An executor's folders are under one folder of its own, ``plait-executor-*`` in the temporary directory, which it
holds by an exclusive ``flock`` on the file ``.owner`` in it. The kernel releases that lock however the process ends,
SIGKILL included, so an executor starting on the same host removes every such folder whose lock it can take: what a
killed executor left behind (``remove_abandoned``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

OWNED_PREFIX = "plait-executor-"
OWNER_FILE = ".owner"
_STAGING_PREFIX = ".plait-executor-new-"  # not yet locked: never taken for abandoned


@dataclass(frozen=True)
class ExecutorFolders:
    """The folders of one executor under its own (``home``)."""

    home: Path

    @property
    def code(self) -> Path:
        return self.home / "code"

    @property
    def live(self) -> Path:
        return self.home / "live"

    @property
    def scratch(self) -> Path:
        return self.home / "scratch"

    def each(self) -> tuple[Path, ...]:
        return self.code, self.live, self.scratch


@contextlib.asynccontextmanager
async def executor_folders(parent: str | None = None) -> AsyncIterator[ExecutorFolders]:
    """This executor's folders, held (see the module's docstring) until exit, then removed with all they hold.
    ``parent``: where (default: the temporary directory)."""
    home, owner = await anyio.to_thread.run_sync(_make_owned, parent or tempfile.gettempdir())
    try:
        yield ExecutorFolders(home)
    finally:
        with anyio.CancelScope(shield=True):
            await remove_folder(str(home))
            os.close(owner)


def _make_owned(parent: str) -> tuple[Path, int]:
    """A new private folder under ``parent`` (with the folders of ``ExecutorFolders``), locked, then given its name:
    one found under that name is always locked by a live process or abandoned."""
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=parent))
    owner = os.open(staging / OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for folder in ExecutorFolders(staging).each():
            folder.mkdir(mode=0o700)
        home = staging.with_name(OWNED_PREFIX + staging.name.removeprefix(_STAGING_PREFIX))
        staging.rename(home)
    except BaseException:
        os.close(owner)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return home, owner


async def remove_abandoned(parent: str | None = None) -> list[str]:
    """Remove the executor folders under ``parent`` (default: the temporary directory) whose owner has ended; the
    paths removed. Another user's folders, and those of live executors, are left alone."""
    return await anyio.to_thread.run_sync(_remove_abandoned, parent or tempfile.gettempdir())


def _remove_abandoned(parent: str) -> list[str]:
    with os.scandir(parent) as entries:
        candidates = [entry.path for entry in entries if entry.name.startswith(OWNED_PREFIX) and _is_own_dir(entry)]
    return [path for path in candidates if _removed_if_abandoned(path)]


def _is_own_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid()
    except OSError:
        return False


def _removed_if_abandoned(path: str) -> bool:
    """Remove the folder if its owner lock can be taken (its owner has ended), holding the lock meanwhile; whether
    it is gone."""
    try:
        owner = os.open(os.path.join(path, OWNER_FILE), os.O_RDWR | os.O_NOFOLLOW)
    except OSError:  # removed meanwhile, or not one of ours
        return False
    try:
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its owner is alive
            return False
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)  # what could not be removed is not reported as removed
    finally:
        os.close(owner)


@contextlib.asynccontextmanager
async def private_folder(prefix: str) -> AsyncIterator[Path]:
    """A new folder only this user may read (``tempfile.mkdtemp``), removed with all it holds on exit."""
    directory = await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix=prefix))
    try:
        yield Path(directory)
    finally:
        with anyio.CancelScope(shield=True):
            await remove_folder(directory)


async def remove_folder(path: str) -> None:
    """Remove ``path`` and all it holds, off the event loop (gone already: nothing to do)."""
    await anyio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))
