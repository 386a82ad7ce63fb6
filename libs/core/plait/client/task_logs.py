"""Reading what attempts wrote (their stdout, stderr and logging): from the logs bucket once they ended; from the live
view (kept an hour, in memory) while they run, or when they were stopped with their execution."""

from __future__ import annotations

from dataclasses import dataclass

import nats.js.errors

from plait import codec
from plait.adapters.nats_errors import as_plait_errors
from plait.adapters.output_store import OutputStore
from plait.adapters.scoped_reads import subject_messages
from plait.client.following import Following
from plait.core.events import (
    TERMINAL_EVENTS,
    AttemptFailed,
    AttemptStarted,
    AttemptStopped,
    MapItemSucceeded,
    NodeQueued,
    NodeSucceeded,
)
from plait.core.ids import item_of_attempt
from plait.core.task_output import OutputRef
from plait.errors import NotFound
from plait.protocol import subjects


@dataclass
class AttemptOutput:
    """One attempt of a node, and what it wrote so far as the log knows: its output is referred to once it ended."""

    node: str
    attempt_id: str
    ended: bool = False
    output: OutputRef | None = None
    stopped: bool = False  # never to end: its execution ended first (its process stopped, its output not stored)

    @property
    def label(self) -> str:
        """The node, and for a map item its index: ``node[3]``."""
        index = item_of_attempt(self.attempt_id)
        return self.node if index < 0 else f"{self.node}[{index}]"


class TaskLogs(Following):
    async def attempt_outputs(self, execution_id: str) -> list[AttemptOutput]:
        """Every attempt of the execution so far, in the order they were queued, with its output's reference once
        it has ended (None when it wrote nothing)."""
        attempts: dict[str, AttemptOutput] = {}
        execution_ended = False
        for record in await self.records(execution_id):
            for event in codec.decision_decoder.decode(record.data).events:
                execution_ended = execution_ended or isinstance(event, TERMINAL_EVENTS)
                match event:
                    case (
                        NodeQueued(node=node, attempt_id=attempt_id) | AttemptStarted(node=node, attempt_id=attempt_id)
                    ) if attempt_id:
                        attempts.setdefault(attempt_id, AttemptOutput(node, attempt_id))
                    case (
                        AttemptFailed(node=node, attempt_id=attempt_id, output=output)
                        | NodeSucceeded(node=node, attempt_id=attempt_id, output=output)
                        | MapItemSucceeded(node=node, attempt_id=attempt_id, output=output)
                    ) if attempt_id:
                        seen = attempts.setdefault(attempt_id, AttemptOutput(node, attempt_id))
                        seen.ended, seen.output = True, output
                    case AttemptStopped(node=node, attempt_id=attempt_id):
                        attempts.setdefault(attempt_id, AttemptOutput(node, attempt_id)).stopped = True
        for one in attempts.values():
            one.stopped = not one.ended and (one.stopped or execution_ended)
        return list(attempts.values())

    async def live_output(self, execution_id: str, attempt_id: str) -> str:
        """What the attempt's live view holds (its output so far; kept an hour, and lost with a lone nats-server
        that restarts): "" when it holds nothing."""
        subject = subjects.live_output_subject(self.project, self.domain, execution_id, attempt_id)
        with as_plait_errors(f"reading the live output of attempt {attempt_id}"):
            try:
                chunks = [
                    raw.data or b"" async for raw in subject_messages(self.js, subjects.LIVE_OUTPUT_STREAM, subject)
                ]
            except nats.js.errors.NotFoundError:  # the stream is gone: nothing is kept
                return ""
        return b"".join(chunks).decode(errors="replace")

    async def logs(self, execution_id: str, node: str | None = None, attempt: int | None = None) -> str:
        """What attempts of the execution wrote (stdout, stderr and logging, as captured; a long output keeps its
        start and its end): by default the last attempt of each node (of a map, of each item), each headed by
        ``== node (attempt N) ==`` (``== node[i] (attempt N) ==`` for item i of a map);
        ``node`` keeps that node's, ``attempt`` picks attempt N of each (of a map, of each item)."""
        chosen = chosen_attempts(await self.attempt_outputs(execution_id), node, attempt)
        if not chosen:
            what = f"node '{node}'" if node else "any node"
            which = "attempt" if attempt is None else f"attempt {attempt}"
            raise NotFound(f"execution {execution_id} has no {which} of {what}")
        store = OutputStore(self.js)
        parts = []
        for one in chosen:
            parts.append(f"== {one.label} (attempt {attempt_number(one.attempt_id)}) ==\n")
            if not one.ended:
                so_far = await self.live_output(execution_id, one.attempt_id)
                parts.append(_not_stored(one.stopped, bool(so_far)) + _whole_lines(so_far))
            elif one.output is None:
                parts.append("(no output)\n")
            else:
                text = await store.read(one.output)
                if text is None:
                    parts.append(f"(its output, {one.output.name}, is no longer in the logs bucket)\n")
                else:
                    parts.append(_whole_lines(text))
        return "".join(parts)


def _not_stored(stopped: bool, live: bool) -> str:
    """The line heading an attempt whose output is not stored (yet), followed or not by what its live view holds."""
    if stopped:
        return (
            f"(stopped when its execution ended: its output was not stored{'; its live view kept:' if live else ''})\n"
        )
    return f"(still running: its output is stored when it ends{'; so far:' if live else ''})\n"


def _whole_lines(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def chosen_attempts(attempts: list[AttemptOutput], node: str | None, attempt: int | None) -> list[AttemptOutput]:
    """The attempts ``logs`` shows: of ``node`` (or every node), attempt number ``attempt`` (or the last one of each
    node, or of each map item)."""
    if node is not None:
        attempts = [one for one in attempts if one.node == node]
    if attempt is not None:
        return [one for one in attempts if attempt_number(one.attempt_id) == attempt]
    last: dict[str, AttemptOutput] = {}
    for one in attempts:
        last[one.attempt_id.rsplit("/", 1)[0]] = one  # per node, or per map item
    return list(last.values())


def attempt_number(attempt_id: str) -> int:
    """The attempt's number (1 for the first attempt of its node or map item): an attempt id ends with it."""
    return int(attempt_id.rsplit("/", 1)[-1])
