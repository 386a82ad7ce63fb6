"""Queue depths read from JetStream every few seconds: durable consumers' pending and unacknowledged messages and
the age of their oldest, the dispatch queue per (cluster, queue) whether or not an executor consumes it, the
timers waiting, and the dead letters and quarantine entries kept.

One poll is a handful of requests (a consumer list per stream, one stream info per stream, one read per non-empty
queue), made by each process that runs a ``QueuePoller``: the schedulers in the deployments of deploy/.
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, StreamState

from plait.metrics import names
from plait.protocol import subjects

log = structlog.get_logger()

POLL_SECONDS = 5.0
CONSUMED_STREAMS = (subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM, subjects.EVENTS_STREAM)


class QueueSnapshot:
    """What one poll read: ``consumers`` by (stream, consumer) as (pending, unacknowledged, oldest age in seconds),
    ``dispatch`` by (cluster, queue) as (messages, oldest age)."""

    def __init__(self) -> None:
        self.consumers: dict[tuple[str, str], tuple[int, int, float]] = {}
        self.dispatch: dict[tuple[str, str], tuple[int, float]] = {}
        self.timers = 0
        self.dead_letters = 0
        self.quarantined = 0


async def read_queues(js: JetStreamContext) -> QueueSnapshot:
    """One poll of the queues; a stream that does not exist yet counts as empty."""
    snapshot = QueueSnapshot()
    now = datetime.now(UTC)
    taking: dict[str, tuple[int, int, float]] = {}  # dispatch subject -> its consumer's waiting, and the oldest's age
    for stream in CONSUMED_STREAMS:
        for info in await _consumers(js, stream):
            if not info.config.durable_name:  # an ordered reader's ephemeral consumer: a name per connection
                continue
            pending, unacked = info.num_pending or 0, info.num_ack_pending or 0
            oldest = 0.0
            if pending + unacked:
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                oldest = await _age_of_first(js, stream, floor + 1, info.config.filter_subject or ">", now)
            snapshot.consumers[stream, info.name] = (pending, unacked, oldest)
            if stream == subjects.DISPATCH_STREAM and info.config.filter_subject:
                taking[info.config.filter_subject] = (pending, unacked, oldest)
    dispatch = await _stream_state(js, subjects.DISPATCH_STREAM, f"{subjects.DISPATCH_ROOT}.>")
    for subject, count in (dispatch.subjects or {} if dispatch else {}).items():
        parts = subject.split(".")
        if len(parts) == 4:
            if subject in taking:  # what is stored also holds what was acknowledged and not trimmed yet
                pending, unacked, age = taking[subject]
                snapshot.dispatch[parts[2], parts[3]] = (pending + unacked, age)
            else:
                age = await _age_of_first(js, subjects.DISPATCH_STREAM, 1, subject, now) if count else 0.0
                snapshot.dispatch[parts[2], parts[3]] = (count, age)
    timers = await _stream_state(js, subjects.TIMERS_STREAM, f"{subjects.SCHEDULES_ROOT}.>")
    snapshot.timers = timers.messages if timers else 0
    dead = await _stream_state(js, subjects.DEAD_LETTER_STREAM)
    snapshot.dead_letters = dead.messages if dead else 0
    quarantine = await _stream_state(js, subjects.QUARANTINE_STREAM)
    snapshot.quarantined = quarantine.messages if quarantine else 0
    return snapshot


def publish(snapshot: QueueSnapshot) -> None:
    """Set the queue gauges to ``snapshot``; queues gone since the last poll are dropped."""
    for gauge in (names.CONSUMER_PENDING, names.CONSUMER_ACK_PENDING, names.CONSUMER_OLDEST_AGE):
        gauge.clear()
    for (stream, consumer), (pending, unacked, oldest) in snapshot.consumers.items():
        names.CONSUMER_PENDING.labels(stream, consumer).set(pending)
        names.CONSUMER_ACK_PENDING.labels(stream, consumer).set(unacked)
        names.CONSUMER_OLDEST_AGE.labels(stream, consumer).set(oldest)
    names.DISPATCH_DEPTH.clear()
    names.DISPATCH_OLDEST_AGE.clear()
    for (cluster, queue), (count, oldest) in snapshot.dispatch.items():
        names.DISPATCH_DEPTH.labels(cluster, queue).set(count)
        names.DISPATCH_OLDEST_AGE.labels(cluster, queue).set(oldest)
    names.TIMERS.set(snapshot.timers)
    names.DEAD_LETTERS_STORED.set(snapshot.dead_letters)
    names.QUARANTINE_STORED.set(snapshot.quarantined)


class QueuePoller:
    def __init__(self, js: JetStreamContext, every_seconds: float = POLL_SECONDS) -> None:
        self.js, self.every_seconds = js, every_seconds

    async def run(self) -> None:
        """Until cancelled: poll and publish; a failed poll (NATS away) keeps the last values and is tried again.
        Nothing a poll meets may stop the service it runs in: metrics are side work."""
        while True:
            try:
                publish(await read_queues(self.js))
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                log.warning("queue_poll_failed", error=repr(exc))
            except Exception:
                log.exception("queue_poll_failed")
            await anyio.sleep(self.every_seconds)


async def _consumers(js: JetStreamContext, stream: str) -> list[ConsumerInfo]:
    try:
        return await js.consumers_info(stream)
    except nats.js.errors.NotFoundError:
        return []


async def _stream_state(js: JetStreamContext, stream: str, subjects_filter: str | None = None) -> StreamState | None:
    try:
        return (await js.stream_info(stream, subjects_filter=subjects_filter)).state
    except nats.js.errors.NotFoundError:
        return None


async def _age_of_first(js: JetStreamContext, stream: str, sequence: int, subject: str, now: datetime) -> float:
    """Age in seconds of the first message on ``subject`` from ``sequence`` on (0 when there is none)."""
    try:
        raw = await js.get_msg(stream, seq=sequence, subject=subject, next=True)
    except nats.js.errors.NotFoundError:
        return 0.0
    return max(0.0, (now - raw.time).total_seconds()) if raw.time else 0.0
