"""Which command partitions this replica holds, and sharing them out among the live replicas.

The server pins each partition's consumer to one replica at a time and moves the pin to another replica waiting
on it once the pinned one has sent no pull request for ``pin_seconds`` (it died, or lost NATS). So that the
partitions spread over the replicas: a replica stands by on a partition (pulls it while not pinned) only while it
holds fewer than its fair share, or when no replica pulls that partition at all (its holder died and all others
have their share); one holding more than its share unpins the newest it took, once another replica stands by on
it, and leaves it alone for a while. Nothing here is needed for correctness: a partition taken by two replicas
in turn is decided by both under optimistic concurrency, as without partitions.
"""

from __future__ import annotations

import contextlib

import anyio
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext

from plait.adapters.partitions import unpin, waiting_pulls
from plait.adapters.services import live_services
from plait.metrics.names import PARTITIONS_HELD
from plait.protocol import partitions as parts

log = structlog.get_logger()

_FAILED = (nats.errors.Error, nats.js.errors.Error, TimeoutError)


class PartitionPin:
    """This replica's pin on one partition's consumer (``plait.adapters.pull.Pin``)."""

    group = parts.PRIORITY_GROUP

    def __init__(self, owner: Partitions, partition: int) -> None:
        self.owner, self.partition = owner, partition
        self.id = ""

    async def stand_by(self) -> None:
        await self.owner.until_may_stand_by(self.partition)

    def pinned(self, pin_id: str) -> None:
        self.id = pin_id
        self.owner.took(self.partition)

    def unpinned(self) -> None:
        self.id = ""
        self.owner.lost(self.partition)


class Partitions:
    """The partitions one replica holds (oldest first), and when it may stand by on the others."""

    def __init__(self, js: JetStreamContext, partitions: int, replica: str, pin_seconds: float) -> None:
        self.js, self.count, self.replica, self.pin_seconds = js, partitions, replica, pin_seconds
        self.pins = [PartitionPin(self, partition) for partition in range(partitions)]
        self.held: list[int] = []
        self.replicas = 1  # live scheduler replicas, as last read from their announcements
        self._resting: dict[int, float] = {}  # partition -> until when this replica leaves it to others (released)
        self._orphans: set[int] = set()  # partitions no replica pulls
        self._changed = anyio.Event()
        self.log = log.bind(replica=replica)

    def took(self, partition: int) -> None:
        if partition not in self.held:
            self.held.append(partition)
            self.log.info("partition_taken", partition=partition, held=len(self.held))
        self._orphans.discard(partition)
        self._change()

    def lost(self, partition: int) -> None:
        if partition in self.held:
            self.held.remove(partition)
            self.log.info("partition_lost", partition=partition, held=len(self.held))
        self._change()

    async def until_may_stand_by(self, partition: int) -> None:
        while True:
            resting = self._resting.get(partition, 0.0) - anyio.current_time()
            if resting > 0:
                await anyio.sleep(resting)
                continue
            if len(self.held) < parts.fair_share(self.count, self.replicas) or partition in self._orphans:
                return
            await self._changed.wait()

    async def run(self) -> None:
        """Every ``pin_seconds``: count the live replicas, give up a partition beyond this replica's share, and
        look for partitions no replica pulls."""
        while True:
            with contextlib.suppress(*_FAILED):  # tried again at the next round: sharing is never needed for safety
                await self._count_replicas()
                await self._release_extra()
                await self._find_orphans()
            await anyio.sleep(self.pin_seconds)

    async def _count_replicas(self) -> None:
        live = sum(1 for one in await live_services(self.js) if one.service == "scheduler")
        if max(live, 1) != self.replicas:
            self.replicas = max(live, 1)
            self._change()

    async def _release_extra(self) -> None:
        partition = parts.one_to_release(self.held, self.count, self.replicas)
        if partition is None:
            return
        if await waiting_pulls(self.js, parts.consumer_name(partition)) < 2:
            return  # no other replica stands by on it (its own request is one): it would wait for nobody
        self._resting[partition] = anyio.current_time() + 3 * self.pin_seconds
        self.pins[partition].unpinned()
        await unpin(self.js, parts.consumer_name(partition))
        self.log.info("partition_released", partition=partition, replicas=self.replicas)

    async def _find_orphans(self) -> None:
        if len(self.held) < parts.fair_share(self.count, self.replicas):
            return  # this replica stands by on every partition already
        for partition in range(self.count):
            if partition in self.held:
                continue
            ours = 1 if partition in self._orphans else 0  # this replica stands by on an orphan: one request is its
            if await waiting_pulls(self.js, parts.consumer_name(partition)) - ours <= 0:
                self._orphans.add(partition)
                self._change()
            else:
                self._orphans.discard(partition)

    def _change(self) -> None:
        PARTITIONS_HELD.set(len(self.held))
        self._changed.set()
        self._changed = anyio.Event()
