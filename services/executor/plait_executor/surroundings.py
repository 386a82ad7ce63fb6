"""What a task's call changes of the process it runs in, put back after it: its working directory (``os.chdir``), its
environment (``os.environ``) and the root logger (handlers added, its level). A warm worker's next call then finds
them as this one did, as a fresh process would; what importing the task's module did stays, as the module does."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import NamedTuple


class Surroundings(NamedTuple):
    cwd: str
    environ: dict[bytes, bytes]
    root_handlers: list[logging.Handler]
    root_level: int


def surroundings() -> Surroundings:
    root = logging.root
    return Surroundings(os.getcwd(), dict(_encoded_environ()), list(root.handlers), root.level)


@contextlib.contextmanager
def surroundings_kept() -> Iterator[None]:
    """Around a task's call: ``put_back`` what it changed."""
    before = surroundings()
    try:
        yield
    finally:
        put_back(before)


def put_back(before: Surroundings) -> None:
    try:
        moved = os.getcwd() != before.cwd
    except OSError:  # the task removed the folder it moved to
        moved = True
    if moved:
        with contextlib.suppress(OSError):
            os.chdir(before.cwd)
    if _encoded_environ() != before.environ:
        os.environ.clear()
        os.environ.update({os.fsdecode(name): os.fsdecode(value) for name, value in before.environ.items()})
    root = logging.root
    if root.handlers != before.root_handlers:
        root.handlers[:] = before.root_handlers
    if root.level != before.root_level:  # only then: setting it clears every logger's cache
        root.setLevel(before.root_level)


def _encoded_environ() -> dict[bytes, bytes]:
    """The dict behind ``os.environ``: copying and comparing it takes under a microsecond, against about 20 through
    ``os.environ`` (which decodes each item), and a warm worker does both on every attempt."""
    return os.environ._data  # type: ignore[attr-defined,no-any-return]
