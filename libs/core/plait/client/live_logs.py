"""Following what an execution's attempts write while they run (``plait logs --follow``).

Attempts that had ended before following began are read from the logs bucket; attempts running then, or started
later, from the live output stream, from their first byte (the stream keeps an hour); and an attempt that ended with
no live view (a Kubernetes pod's, or one whose executor was lost) from the logs bucket once it has ended. It ends
once the execution has, and everything written before then has been read. A nats-server that restarted has lost
the follower's consumer, and the stream too when alone (it is in memory): the follower makes its consumer again, and
prints the stored output, whole, of an attempt whose live view was cut off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

import anyio
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from plait.adapters.connection import reconnection_count, route_of
from plait.adapters.output_store import OutputStore
from plait.client.task_logs import AttemptOutput, TaskLogs, attempt_number, chosen_attempts
from plait.protocol import subjects
from plait.protocol.headers import PLAIT_ATTEMPT, PLAIT_OUTPUT_END

FETCH_BATCH = 256
FETCH_WAIT_SECONDS = 0.5  # a long poll: returns as soon as a chunk arrives
CONSUMER_INACTIVE_SECONDS = 60.0
CUT_OFF = "[plait: the live view of this attempt was cut off (NATS restarted); its whole output, as stored:]\n"
_ITEM = re.compile(r"\[\d+\]$")


@dataclass(frozen=True)
class OutputChunk:
    """Output of one attempt: ``text`` (live: as it was written; else the whole stored output), and whether the
    attempt has ended with it."""

    attempt_id: str
    label: str  # the node, ``node[i]`` for item i of a map
    text: str
    ended: bool
    live: bool

    @property
    def attempt(self) -> int:
        return attempt_number(self.attempt_id)


class LiveLogs(TaskLogs):
    async def follow_logs(self, execution_id: str, node: str | None = None) -> AsyncIterator[OutputChunk]:
        """What the execution's attempts (of ``node``, or of every node) write, as they write it, until the
        execution has ended: the stored output of attempts that had ended already, then live chunks."""
        ended_before = [one for one in await self.attempt_outputs(execution_id) if one.ended]
        skipped = {one.attempt_id for one in ended_before}
        for one in chosen_attempts(ended_before, node, None):
            yield await self._stored(one)
        send, receive = anyio.create_memory_object_stream[OutputChunk](FETCH_BATCH)
        async with anyio.create_task_group() as following:
            following.start_soon(self._pump, execution_id, node, skipped, send)
            async with receive:
                try:
                    async for chunk in receive:
                        yield chunk
                except GeneratorExit:  # closed early (``aclosing``, a ``break``): stop following, end cleanly
                    following.cancel_scope.cancel()

    async def _pump(
        self,
        execution_id: str,
        node: str | None,
        skipped: set[str],
        send: anyio.abc.ObjectSendStream[OutputChunk],
    ) -> None:
        async with send:
            execution_ended = anyio.Event()
            seen = Seen()
            async with anyio.create_task_group() as watching:
                watching.start_soon(self._until_ended, execution_id, execution_ended)
                live = subjects.live_output_filter(self.project, self.domain, execution_id)
                await _live_chunks(self.js, live, execution_id, node, skipped, seen, execution_ended, send)
            for one in chosen_attempts(await self.attempt_outputs(execution_id), node, None):
                if not one.ended or one.attempt_id in skipped | seen.ended:
                    continue
                if one.attempt_id in seen.shown:  # its live view was cut off (NATS restarted): all of it, stored
                    stored = await self._stored(one)
                    await send.send(dataclasses.replace(stored, text=CUT_OFF + stored.text))
                else:
                    await send.send(await self._stored(one) if one.output is not None else _wrote_nothing(one))

    async def _until_ended(self, execution_id: str, ended: anyio.Event) -> None:
        async for _ in self.events(execution_id):  # ends with the execution's last decision
            pass
        ended.set()

    async def _stored(self, one: AttemptOutput) -> OutputChunk:
        if one.output is None:
            text = ""
        else:
            text = (
                await OutputStore(self.js).read(one.output) or f"(its output, {one.output.name}, is no longer kept)\n"
            )
        return OutputChunk(one.attempt_id, one.label, text, ended=True, live=False)


async def _live_chunks(
    js: JetStreamContext,
    live_subject: str,
    execution_id: str,
    node: str | None,
    skipped: set[str],
    seen: Seen,
    execution_ended: anyio.Event,
    send: anyio.abc.ObjectSendStream[OutputChunk],
) -> None:
    """Send the live chunks of the execution's attempts (but those in ``skipped``), from the first one kept, until the
    execution has ended and every chunk published before then was read; ``seen`` gets each attempt sent, and each
    whose end was sent."""
    reader = _LiveReader(js, live_subject)
    try:
        while True:
            caught_up = execution_ended.is_set()  # before the fetch: what was published before the end is read
            messages = await reader.fetch()
            for msg in messages:
                attempt_id = (msg.headers or {}).get(PLAIT_ATTEMPT, "")
                if not attempt_id or attempt_id in skipped or not _of_node(execution_id, attempt_id, node):
                    continue
                seen.shown.add(attempt_id)
                ended = PLAIT_OUTPUT_END in (msg.headers or {})
                if ended:
                    seen.ended.add(attempt_id)
                label = _label(execution_id, attempt_id)
                await send.send(OutputChunk(attempt_id, label, msg.data.decode(errors="replace"), ended, live=True))
            if caught_up and not messages and await reader.read_all():
                return
    finally:
        await reader.close()


@dataclass
class Seen:
    """The attempts whose live output was sent, and those whose end was."""

    shown: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)


class _LiveReader:
    """A consumer of the live output of an execution, made anew when it is gone: a nats-server that restarted has
    lost it, and the stream too when alone (the stream is in memory; an executor makes it again). On the same stream
    it goes on after the last chunk read; on a stream made anew, from its first."""

    def __init__(self, js: JetStreamContext, subject: str) -> None:
        self.js, self.subject = js, subject
        self.subscription: JetStreamContext.PullSubscription | None = None
        self.stream_created: datetime | None = None  # of the stream the consumer reads
        self.last_read = 0  # the stream sequence of the last chunk read
        self.reconnections = -1  # the connection's, when the consumer was made

    def _reconnections(self) -> int:
        return reconnection_count(route_of(self.js).nc)

    async def fetch(self) -> list[Msg]:
        """The chunks published since the last fetch (waiting up to ``FETCH_WAIT_SECONDS`` for one)."""
        try:
            made = self.subscription is not None and self.reconnections == self._reconnections()
            if not made and not await self._anew():
                await anyio.sleep(FETCH_WAIT_SECONDS)  # the stream is gone: an executor makes it again
                return []
            assert self.subscription is not None  # noqa: S101  made by _anew
            messages = await self.subscription.fetch(FETCH_BATCH, timeout=FETCH_WAIT_SECONDS)
        except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when nothing came
            return []
        except nats.errors.Error:  # NATS is away, or the consumer is gone: made anew once it can be
            self.subscription = None
            await anyio.sleep(FETCH_WAIT_SECONDS)
            return []
        if messages:
            self.last_read = messages[-1].metadata.sequence.stream
        return messages

    async def read_all(self) -> bool:
        """Whether every chunk stored so far was read: true when the stream is gone (its chunks with it)."""
        try:
            if self.subscription is None:
                return not await self._anew()
            return (await self.subscription.consumer_info()).num_pending == 0
        except nats.errors.Error:  # as in ``fetch``
            self.subscription = None
            return False

    async def _anew(self) -> bool:
        """Make the consumer again (false when the stream is gone)."""
        await self.close()
        self.reconnections = self._reconnections()
        try:
            info = await self.js.stream_info(subjects.LIVE_OUTPUT_STREAM)
        except nats.js.errors.NotFoundError:
            return False
        if self.stream_created is not None and info.created == self.stream_created:
            start = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.last_read + 1)
        else:  # the first consumer, or the stream was made anew: from its first chunk
            start = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
            self.stream_created, self.last_read = info.created, 0
        config = dataclasses.replace(start, ack_policy=AckPolicy.NONE, inactive_threshold=CONSUMER_INACTIVE_SECONDS)
        try:
            self.subscription = await self.js.pull_subscribe(
                self.subject, stream=subjects.LIVE_OUTPUT_STREAM, config=config
            )
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def close(self) -> None:
        if self.subscription is not None:
            subscription, self.subscription = self.subscription, None
            with anyio.CancelScope(shield=True), anyio.move_on_after(2), contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()


def _label(execution_id: str, attempt_id: str) -> str:
    return attempt_id.removeprefix(f"{execution_id}/").rsplit("/", 1)[0]


def _of_node(execution_id: str, attempt_id: str, node: str | None) -> bool:
    return node is None or _ITEM.sub("", _label(execution_id, attempt_id)) == node


def _wrote_nothing(one: AttemptOutput) -> OutputChunk:
    """An attempt that ended while followed having written nothing: its executor published no live view of it."""
    return OutputChunk(one.attempt_id, one.label, "", ended=True, live=True)
