"""Removing from the commands and dispatch streams what their consumers have acknowledged.

The two streams keep their messages by limits, not as work queues: a work queue deletes each message as it is
acknowledged, and with fsync always each delete is a synced write (84-87 µs of nats-server CPU per message on this
project's 2-core machine, about what storing it costs; an acknowledgement that deletes nothing costs 5-7 µs). Here
an acknowledgement only moves its consumer's ack floor, and the schedulers purge every ``TRIM_SECONDS`` what lies
below it, many messages in one purge.

Only the consumers that take work count: durable ones with explicit acknowledgements, as every service makes. A
reader that acknowledges nothing or lasts only while it reads (``nats stream view``'s ordered consumer, say) takes
nothing away from the stream: had its filter (often every subject) been purged up to what it had read, the
dispatches of a queue no executor consumes yet would have gone with it.

A purge takes one filter subject. For each filter subject of each consumer, what is purged lies below the lowest
point reached by every consumer whose filters can take a message of that subject (two consumers never share a
subject, as on a work queue, but were they to, the slower one keeps its messages). A subject no consumer takes is
never purged: its messages wait, as in a work queue, for the consumer that will take them. A consumer made anew
takes again what was acknowledged but not purged yet (at most ``TRIM_SECONDS`` of it while the schedulers run):
commands are decided once by their ids, and a dispatch whose attempt has ended is not run again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import anyio
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerInfo

from plait.protocol import subjects

log = structlog.get_logger()

TRIM_SECONDS = 1.0
TRIMMED_STREAMS = (subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM)
CONSUMERS_PAGE = 256  # the most consumers the server lists in one reply


def filters_of(info: ConsumerInfo) -> list[str]:
    """The subjects a consumer takes (every subject of its stream when it names none)."""
    config = info.config
    return list(config.filter_subjects or ([config.filter_subject] if config.filter_subject else [">"]))


def takes_work(info: ConsumerInfo) -> bool:
    """Whether the consumer is one whose acknowledgements say a message is done with: durable, acknowledging each."""
    config = info.config
    return bool(config.durable_name) and config.ack_policy in (AckPolicy.EXPLICIT, None)


def done_through(info: ConsumerInfo) -> int:
    """The stream sequence up to which the consumer wants nothing more: its ack floor, or, with nothing awaiting an
    acknowledgement, the last sequence it delivered (a message given up after its last delivery, never acknowledged,
    would hold the ack floor back for ever)."""
    floor = info.ack_floor.stream_seq if info.ack_floor else 0
    if not info.num_ack_pending and info.delivered is not None:
        return max(floor, info.delivered.stream_seq)
    return floor


def collide(first: str, second: str) -> bool:
    """Whether some subject matches both filters (``*`` one token, ``>`` one or more at the end)."""
    a, b = first.split("."), second.split(".")
    for x, y in zip(a, b, strict=False):
        if ">" in (x, y):
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(a) == len(b)


def trim_points(consumers: Iterable[ConsumerInfo]) -> dict[str, int]:
    """By filter subject, the sequence below which its messages may be purged (0: none). Run every second over every
    consumer (one per executor queue): a subject without wildcards meets only its equals and the wildcard filters."""
    exact: dict[str, int] = {}  # the lowest point of the consumers taking each subject without wildcards
    wildcards: list[tuple[str, int]] = []
    for info in filter(takes_work, consumers):
        point = done_through(info)
        for subject in filters_of(info):
            if "*" in subject or ">" in subject.split("."):
                wildcards.append((subject, point))
            else:
                exact[subject] = min(point, exact.get(subject, point))
    points = {
        subject: min([point, *(p for wildcard, p in wildcards if collide(subject, wildcard))])
        for subject, point in exact.items()
    }
    for subject, point in wildcards:
        points[subject] = min(
            [point]
            + [p for other, p in wildcards if collide(subject, other)]
            + [p for other, p in exact.items() if collide(subject, other)]
        )
    return points


class AckedTrimmer:
    """Purges what the consumers of ``streams`` have acknowledged; remembers what it purged, to ask again only when a
    consumer has moved on."""

    def __init__(self, js: JetStreamContext, streams: Sequence[str] = TRIMMED_STREAMS) -> None:
        self.js, self.streams = js, streams
        self._purged: dict[tuple[str, str], int] = {}
        self.purges = 0

    async def trim(self, stream: str) -> None:
        """One pass over ``stream``'s consumers; a stream that does not exist yet has nothing to trim."""
        consumers: list[ConsumerInfo] = []
        try:
            while page := await self.js.consumers_info(stream, offset=len(consumers)):
                consumers += page
                if len(page) < CONSUMERS_PAGE:
                    break
        except nats.js.errors.NotFoundError:
            return
        for subject, point in trim_points(consumers).items():
            if point and point != self._purged.get((stream, subject)):  # lower: the stream was made anew
                await self.js.purge_stream(stream, subject=subject, seq=point + 1)
                self._purged[stream, subject] = point
                self.purges += 1

    async def trim_all(self) -> None:
        for stream in self.streams:
            await self.trim(stream)

    async def run(self, every_seconds: float = TRIM_SECONDS) -> None:
        """Until cancelled: trim every stream, then wait; a failed pass (NATS away) is tried again at the next."""
        while True:
            try:
                await self.trim_all()
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                log.warning("acked_trim_failed", error=repr(exc))
            await anyio.sleep(every_seconds)
