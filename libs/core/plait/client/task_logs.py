"""Reading what attempts wrote (their stdout, stderr and logging), from the logs bucket."""

from __future__ import annotations

from dataclasses import dataclass

from plait import codec
from plait.adapters.output_store import OutputStore
from plait.client.following import Following
from plait.core.events import AttemptFailed, AttemptStarted, MapItemSucceeded, NodeQueued, NodeSucceeded
from plait.core.ids import item_of_attempt
from plait.core.task_output import OutputRef
from plait.errors import NotFound


@dataclass
class AttemptOutput:
    """One attempt of a node, and what it wrote so far as the log knows: its output is referred to once it ended."""

    node: str
    attempt_id: str
    ended: bool = False
    output: OutputRef | None = None

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
        for record in await self.records(execution_id):
            for event in codec.decision_decoder.decode(record.data).events:
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
        return list(attempts.values())

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
                parts.append("(still running: its output is stored when it ends)\n")
            elif one.output is None:
                parts.append("(no output)\n")
            else:
                text = await store.read(one.output)
                if text is None:
                    parts.append(f"(its output, {one.output.name}, is no longer in the logs bucket)\n")
                else:
                    parts.append(text if text.endswith("\n") else text + "\n")
        return "".join(parts)


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
