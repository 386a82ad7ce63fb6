"""Live executors: each announces itself in a JetStream key-value bucket, and keeps announcing while it serves.

The bucket's entries expire ``ANNOUNCEMENT_TTL_SECONDS`` after their last write (the bucket's max age), so an
executor that dies disappears from it within that time; one that stops cleanly deletes its entry. Nothing of it is
kept in a process's memory only: any reader (``plait clusters list``, ``plait executions show``) lists the live
executors from the bucket.
"""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

EXECUTORS_BUCKET = "PLAIT_EXECUTORS"
"""The key-value bucket of live executors; its stream is ``KV_PLAIT_EXECUTORS``, its subjects
``$KV.PLAIT_EXECUTORS.<cluster>.<queue>.<replica>``."""

ANNOUNCE_EVERY_SECONDS = 5.0
"""How often an executor writes its announcement again (its heartbeat)."""
ANNOUNCEMENT_TTL_SECONDS = 15.0
"""How long an announcement lives after its last write: an executor silent this long is no longer live."""


class ExecutorAnnouncement(msgspec.Struct, frozen=True, kw_only=True):
    """An executor replica that serves: which cluster and queue it takes work of, on which back end, with which
    labels; when it started, and when it last said so."""

    cluster: str
    queue: str
    replica: str
    backend: str
    labels: dict[str, str] = {}
    started: datetime
    last_seen: datetime


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-=]")


def _key_token(value: str) -> str:
    """``value`` as one token of a key-value key (which allows letters, digits, '-', '_' and '=')."""
    return _KEY_UNSAFE.sub("_", value) or "_"


def announcement_key(cluster: str, queue: str, replica: str) -> str:
    """The bucket key of one executor replica: ``<cluster>.<queue>.<replica>`` (each as a key token)."""
    return f"{_key_token(cluster)}.{_key_token(queue)}.{_key_token(replica)}"


def parse_labels(text: str | list[str] | None) -> dict[str, str]:
    """Labels given as ``key=value`` items (a list, or one comma-separated string); ``ValueError`` naming a bad
    item."""
    items = [text] if isinstance(text, str) else list(text or [])
    labels: dict[str, str] = {}
    for item in (part.strip() for chunk in items for part in chunk.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"label {item!r} must look like key=value")
        labels[key.strip()] = value.strip()
    return labels
