"""The bucket of live executors (see ``plait.protocol.executors``): announcing one, and listing them."""

from __future__ import annotations

import contextlib

import msgspec
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from plait.protocol.executors import ANNOUNCEMENT_TTL_SECONDS, EXECUTORS_BUCKET, ExecutorAnnouncement

log = structlog.get_logger()

_decoder = msgspec.json.Decoder(ExecutorAnnouncement)


async def executors_bucket(
    js: JetStreamContext, replicas: int | None = None, ttl_seconds: float = ANNOUNCEMENT_TTL_SECONDS
) -> KeyValue:
    """The bucket, made when missing (its entries expire ``ttl_seconds`` after their last write)."""
    try:
        return await js.key_value(EXECUTORS_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        pass
    config = KeyValueConfig(
        bucket=EXECUTORS_BUCKET,
        history=1,
        ttl=ttl_seconds,
        replicas=replicas or 1,
    )
    with contextlib.suppress(nats.js.errors.BadRequestError):  # made meanwhile by another executor
        return await js.create_key_value(config)
    return await js.key_value(EXECUTORS_BUCKET)


async def live_executors(js: JetStreamContext) -> list[ExecutorAnnouncement]:
    """Every executor whose announcement has not expired; unreadable entries are skipped (and logged)."""
    try:
        bucket = await js.key_value(EXECUTORS_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        return []
    try:
        keys = await bucket.keys()
    except nats.js.errors.NoKeysError:
        return []
    found: list[ExecutorAnnouncement] = []
    for key in keys:
        try:
            entry = await bucket.get(key)
        except nats.js.errors.KeyNotFoundError:  # expired or deleted since it was listed
            continue
        if entry.value is None:
            continue
        try:
            found.append(_decoder.decode(entry.value))
        except msgspec.DecodeError as exc:
            log.warning("executor_announcement_unreadable", key=key, error=str(exc))
    return sorted(found, key=lambda a: (a.cluster, a.queue, a.replica))
