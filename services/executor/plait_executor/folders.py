"""Private temporary folders an executor keeps while it serves (unpacked code bundles, running attempts' output, its
workers' temporary files)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread


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
