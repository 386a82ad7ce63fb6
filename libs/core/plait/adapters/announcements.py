"""Key-value buckets of announcements (live executors, live service replicas): making one, and reading what is in it
now. Each entry expires a while after its last write, so what is read is what is alive."""

from __future__ import annotations

import contextlib
from typing import TypeVar

import msgspec
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

log = structlog.get_logger()

Announcement = TypeVar("Announcement")


async def announcements_bucket(js: JetStreamContext, name: str, ttl_seconds: float, replicas: int | None) -> KeyValue:
    """The bucket ``name``, made when missing (its entries expire ``ttl_seconds`` after their last write)."""
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        pass
    config = KeyValueConfig(bucket=name, history=1, ttl=ttl_seconds, replicas=replicas or 1)
    with contextlib.suppress(nats.js.errors.BadRequestError):  # made meanwhile by another replica
        return await js.create_key_value(config)
    return await js.key_value(name)


async def live_announcements(
    js: JetStreamContext, name: str, decoder: msgspec.json.Decoder[Announcement], what: str
) -> list[Announcement]:
    """Every announcement in the bucket ``name`` that has not expired; unreadable ones are skipped (and logged as
    ``<what>_announcement_unreadable``)."""
    try:
        bucket = await js.key_value(name)
        keys = await bucket.keys()
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NoKeysError):
        return []
    found: list[Announcement] = []
    for key in keys:
        try:
            entry = await bucket.get(key)
        except nats.js.errors.KeyNotFoundError:  # expired or deleted since it was listed
            continue
        if entry.value is None:
            continue
        try:
            found.append(decoder.decode(entry.value))
        except msgspec.DecodeError as exc:
            log.warning(f"{what}_announcement_unreadable", key=key, error=str(exc))
    return found
