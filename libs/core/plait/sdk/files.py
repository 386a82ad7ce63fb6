"""``File`` and ``Directory``: values whose bytes travel through the values bucket, and reach a task as a local
path.

A task returns ``File(path)`` for a file it wrote; its runtime uploads the bytes and the events carry a reference.
A task taking a ``File`` gets one whose ``path`` is a local copy, downloaded before it is called.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from plait.core.values import TAG_FIELD


class File(msgspec.Struct, frozen=True, tag_field=TAG_FIELD, tag="file"):
    """A file on the local file system, by its path."""

    path: str

    def read_bytes(self) -> bytes:
        return Path(self.path).read_bytes()


class Directory(msgspec.Struct, frozen=True, tag_field=TAG_FIELD, tag="directory"):
    """A directory tree on the local file system, by its path."""

    path: str
