"""Every cluster known (from live executors, and from queued work), with its live executors and its queued
attempts: what ``plait clusters list`` and ``plait executions show`` tell."""

from __future__ import annotations

import msgspec
import nats.js.errors
from nats.js import JetStreamContext

from plait.adapters.executors import live_executors
from plait.protocol import subjects
from plait.protocol.executors import ExecutorAnnouncement


class QueueView(msgspec.Struct, frozen=True, kw_only=True):
    """One queue of a cluster: its dispatches stored (``queued``: not yet finished with), of which ``waiting`` no
    executor has taken yet and ``held`` are with an executor (both -1 when no executor ever consumed it)."""

    queue: str
    queued: int
    waiting: int = -1
    held: int = -1


class ClusterView(msgspec.Struct, frozen=True, kw_only=True):
    cluster: str
    executors: list[ExecutorAnnouncement]
    queues: list[QueueView]

    @property
    def queued(self) -> int:
        return sum(q.queued for q in self.queues)


def _names_of(dispatch_subject: str) -> tuple[str, str] | None:
    """(cluster, queue) of ``plait.dispatch.<cluster>.<queue>``, with '.' for the ':' a token writes."""
    parts = dispatch_subject.split(".")
    if len(parts) != 4 or f"{parts[0]}.{parts[1]}" != subjects.DISPATCH_ROOT:
        return None
    return parts[2].replace(":", "."), parts[3].replace(":", ".")


async def _queued_by_subject(js: JetStreamContext) -> dict[str, int]:
    try:
        info = await js.stream_info(subjects.DISPATCH_STREAM, subjects_filter=f"{subjects.DISPATCH_ROOT}.>")
    except nats.js.errors.NotFoundError:
        return {}
    return dict(info.state.subjects or {})


async def _consumers_by_subject(js: JetStreamContext) -> dict[str, tuple[int, int]]:
    """(waiting, held) of the executors' consumer of each dispatch subject."""
    try:
        consumers = await js.consumers_info(subjects.DISPATCH_STREAM)
    except nats.js.errors.NotFoundError:
        return {}
    return {
        c.config.filter_subject: (c.num_pending or 0, c.num_ack_pending or 0)
        for c in consumers
        if c.config.filter_subject
    }


async def cluster_overview(js: JetStreamContext) -> list[ClusterView]:
    """Every cluster with a live executor or a dispatch stored for it, by name."""
    executors = await live_executors(js)
    queued = await _queued_by_subject(js)
    consumers = await _consumers_by_subject(js)
    queues: dict[str, dict[str, QueueView]] = {}
    for subject in set(queued) | set(consumers):
        names = _names_of(subject)
        if names is None:
            continue
        waiting, held = consumers.get(subject, (-1, -1))
        cluster, queue = names
        # A consumed queue's stored messages also count those acknowledged and not trimmed yet (acked_trim).
        stored = waiting + held if subject in consumers else queued.get(subject, 0)
        queues.setdefault(cluster, {})[queue] = QueueView(queue=queue, queued=stored, waiting=waiting, held=held)
    for executor in executors:
        queues.setdefault(executor.cluster, {}).setdefault(executor.queue, QueueView(queue=executor.queue, queued=0))
    return [
        ClusterView(
            cluster=cluster,
            executors=[e for e in executors if e.cluster == cluster],
            queues=[by_queue[q] for q in sorted(by_queue)],
        )
        for cluster, by_queue in sorted(queues.items())
    ]
