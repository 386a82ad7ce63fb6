"""Following what an execution's attempts write while they run (``plait logs --follow``).

Attempts that had ended before following began are read from the logs bucket; attempts running then, or started
later, from the live output stream, from their first byte (the stream keeps an hour); and an attempt that ended with
no live view (a Kubernetes pod's, or one whose executor was lost) from the logs bucket once it has ended. It ends
once the execution has, and everything written before then has been read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from plait.adapters.output_store import OutputStore
from plait.client.task_logs import AttemptOutput, TaskLogs, attempt_number, chosen_attempts
from plait.protocol import subjects
from plait.protocol.headers import PLAIT_ATTEMPT, PLAIT_OUTPUT_END

FETCH_BATCH = 256
FETCH_WAIT_SECONDS = 0.5  # a long poll: returns as soon as a chunk arrives
CONSUMER_INACTIVE_SECONDS = 60.0
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
                async for chunk in receive:
                    yield chunk

    async def _pump(
        self,
        execution_id: str,
        node: str | None,
        skipped: set[str],
        send: anyio.abc.ObjectSendStream[OutputChunk],
    ) -> None:
        async with send:
            execution_ended = anyio.Event()
            live_seen: set[str] = set()
            async with anyio.create_task_group() as watching:
                watching.start_soon(self._until_ended, execution_id, execution_ended)
                live = subjects.live_output_filter(self.project, self.domain, execution_id)
                await _live_chunks(self.js, live, execution_id, node, skipped, live_seen, execution_ended, send)
            for one in chosen_attempts(await self.attempt_outputs(execution_id), node, None):
                if one.ended and one.attempt_id not in skipped | live_seen:
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
    seen: set[str],
    execution_ended: anyio.Event,
    send: anyio.abc.ObjectSendStream[OutputChunk],
) -> None:
    """Send the live chunks of the execution's attempts (but those in ``skipped``), from the first one kept, until the
    execution has ended and every chunk published before then was read; ``seen`` gets each attempt sent."""
    subscription = await js.pull_subscribe(
        live_subject,
        stream=subjects.LIVE_OUTPUT_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=CONSUMER_INACTIVE_SECONDS,
        ),
    )
    try:
        while True:
            caught_up = execution_ended.is_set()  # before the fetch: what was published before the end is read
            try:
                messages = await subscription.fetch(FETCH_BATCH, timeout=FETCH_WAIT_SECONDS)
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when nothing came
                messages = []
            for msg in messages:
                attempt_id = (msg.headers or {}).get(PLAIT_ATTEMPT, "")
                if not attempt_id or attempt_id in skipped or not _of_node(execution_id, attempt_id, node):
                    continue
                seen.add(attempt_id)
                ended = PLAIT_OUTPUT_END in (msg.headers or {})
                label = _label(execution_id, attempt_id)
                await send.send(OutputChunk(attempt_id, label, msg.data.decode(errors="replace"), ended, live=True))
            if caught_up and not messages and (await subscription.consumer_info()).num_pending == 0:
                return
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await subscription.unsubscribe()


def _label(execution_id: str, attempt_id: str) -> str:
    return attempt_id.removeprefix(f"{execution_id}/").rsplit("/", 1)[0]


def _of_node(execution_id: str, attempt_id: str, node: str | None) -> bool:
    return node is None or _ITEM.sub("", _label(execution_id, attempt_id)) == node


def _wrote_nothing(one: AttemptOutput) -> OutputChunk:
    """An attempt that ended while followed having written nothing: its executor published no live view of it."""
    return OutputChunk(one.attempt_id, one.label, "", ended=True, live=True)
