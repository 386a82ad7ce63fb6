"""The bucket of live executors (see ``plait.protocol.executors``): announcing one, and listing them."""

from __future__ import annotations

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from plait.adapters.announcements import announcements_bucket, live_announcements
from plait.protocol.executors import ANNOUNCEMENT_TTL_SECONDS, EXECUTORS_BUCKET, ExecutorAnnouncement

log = structlog.get_logger()

_decoder = msgspec.json.Decoder(ExecutorAnnouncement)


async def executors_bucket(
    js: JetStreamContext, replicas: int | None = None, ttl_seconds: float = ANNOUNCEMENT_TTL_SECONDS
) -> KeyValue:
    """The bucket, made when missing (its entries expire ``ttl_seconds`` after their last write)."""
    return await announcements_bucket(js, EXECUTORS_BUCKET, ttl_seconds, replicas)


async def live_executors(js: JetStreamContext) -> list[ExecutorAnnouncement]:
    """Every executor whose announcement has not expired; unreadable entries are skipped (and logged)."""
    found = await live_announcements(js, EXECUTORS_BUCKET, _decoder, "executor")
    return sorted(found, key=lambda a: (a.cluster, a.queue, a.replica))
