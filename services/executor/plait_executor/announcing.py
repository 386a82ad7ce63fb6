"""An executor's announcement of itself in the bucket of live executors, written again every few seconds while it
serves, and deleted when it stops (an executor that dies is forgotten when its entry expires)."""

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

from plait.adapters.executors import executors_bucket
from plait.protocol.executors import ANNOUNCE_EVERY_SECONDS, ExecutorAnnouncement, announcement_key

log = structlog.get_logger("plait.executor")


class Announcer:
    def __init__(
        self,
        js: JetStreamContext,
        announcement: ExecutorAnnouncement,
        every_seconds: float = ANNOUNCE_EVERY_SECONDS,
        replicas: int | None = None,
    ) -> None:
        self.js, self.announcement, self.every_seconds, self.replicas = js, announcement, every_seconds, replicas
        self.key = announcement_key(announcement.cluster, announcement.queue, announcement.replica)

    async def run(self) -> None:
        """Announce now and every ``every_seconds`` until cancelled; then delete the announcement. Liveness never
        stops the executor: a failed write (NATS away, the bucket's stream without a leader) is logged and tried
        again at the next heartbeat."""
        bucket: KeyValue | None = None
        try:
            while True:
                seen = msgspec.structs.replace(self.announcement, last_seen=datetime.now(UTC))
                try:
                    bucket = bucket or await executors_bucket(self.js, self.replicas)
                    await bucket.put(self.key, msgspec.json.encode(seen))
                except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                    log.warning("announcement_not_written", error=repr(exc))
                await anyio.sleep(self.every_seconds)
        finally:
            if bucket is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                    with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, TimeoutError):
                        await bucket.delete(self.key)


def announcement(cluster: str, queue: str, replica: str, backend: str, labels: dict[str, str]) -> ExecutorAnnouncement:
    now = datetime.now(UTC)
    return ExecutorAnnouncement(
        cluster=cluster, queue=queue, replica=replica, backend=backend, labels=labels, started=now, last_seen=now
    )
