"""The bucket of live service replicas (see ``plait.protocol.services``): announcing one, and listing them."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import anyio
import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from plait.adapters.announcements import announcements_bucket, live_announcements
from plait.metrics.endpoint import plait_version
from plait.metrics.health import Health
from plait.protocol.services import (
    ANNOUNCE_EVERY_SECONDS,
    ANNOUNCEMENT_TTL_SECONDS,
    SERVICES_BUCKET,
    ServiceAnnouncement,
    service_key,
)

log = structlog.get_logger()

_decoder = msgspec.json.Decoder(ServiceAnnouncement)
_FAILED = (nats.errors.Error, nats.js.errors.Error, TimeoutError)


async def services_bucket(js: JetStreamContext, replicas: int | None = None) -> KeyValue:
    """The bucket, made when missing."""
    return await announcements_bucket(js, SERVICES_BUCKET, ANNOUNCEMENT_TTL_SECONDS, replicas)


async def announce_service(
    js: JetStreamContext,
    service: str,
    replica: str,
    health: Health,
    replicas: int | None = None,
    every_seconds: float = ANNOUNCE_EVERY_SECONDS,
) -> None:
    """Until cancelled: announce the replica now and every ``every_seconds``, then delete its entry. A failed write
    is logged and tried again at the next beat: announcing never stops the service."""
    started = datetime.now(UTC)
    key = service_key(service, replica)
    bucket: KeyValue | None = None
    try:
        while True:
            seen = ServiceAnnouncement(
                service=service,
                replica=replica,
                version=plait_version(),
                metrics_url=health.endpoint_url,
                started=started,
                last_seen=datetime.now(UTC),
            )
            try:
                bucket = bucket or await services_bucket(js, replicas)
                await bucket.put(key, msgspec.json.encode(seen))
            except _FAILED as exc:
                log.warning("service_announcement_not_written", error=repr(exc))
            await anyio.sleep(every_seconds)
    finally:
        if bucket is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2.0), contextlib.suppress(*_FAILED):
                await bucket.delete(key)


async def live_services(js: JetStreamContext) -> list[ServiceAnnouncement]:
    """Every replica whose announcement has not expired; unreadable entries are skipped (and logged)."""
    found = await live_announcements(js, SERVICES_BUCKET, _decoder, "service")
    return sorted(found, key=lambda a: (a.service, a.replica))
