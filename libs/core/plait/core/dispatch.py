"""Dispatch records: what an executor worker needs to run attempts, derived from ``NodeQueued`` events.

One decision may queue many attempts (a fan-out, a map's items). The attempts it queued for one queue travel
together, in chunks of at most ``DISPATCH_CHUNK_ATTEMPTS`` attempts and about ``DISPATCH_CHUNK_BYTES`` of inputs
(a ``DispatchChunk``: one publish, one stored message, one fetch and one ack for all of them); a chunk of one
attempt is a plain ``Dispatch``, as it always was. Chunks are cut from the decision alone, the same way on every
replica, so each has an id that any replica republishing it uses too (``Chunk.message_id``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from plait.core.events import NodeQueued
from plait.core.model import TaskSpec
from plait.core.state import Execution, task_timeout

DISPATCH_CHUNK_ATTEMPTS = 32
"""The most attempts of one decision one dispatch message carries (so a fan-out still spreads over executors)."""
DISPATCH_LEAST_CHUNKS = 8
"""A decision's attempts for one queue go in at least this many messages (when there are as many attempts, and
``DISPATCH_CHUNK_LEAST_ATTEMPTS`` each), each taken whole by one executor replica: a wide fan-out spreads over up
to this many replicas at once."""
DISPATCH_CHUNK_LEAST_ATTEMPTS = 2
"""A chunk carries at least this many attempts when its decision queued as many: a small decision's attempts
travel in one message (a write, a delivery and an ack fewer), and those its executor cannot start soon are handed
on to another replica (``plait_executor.hand_on``)."""
DISPATCH_CHUNK_BYTES = 256 * 1024
"""A chunk closes before the encoded inputs of its attempts pass this (a message must stay under the server's
1 MiB); an attempt larger than it travels alone."""


class Dispatch(msgspec.Struct, frozen=True, kw_only=True, tag="dispatch.v1"):
    execution_id: str
    project: str
    domain: str
    node: str
    attempt_id: str
    attempt: int
    task: TaskSpec
    inputs: dict[str, Any]
    decision_sequence: int  # the stream sequence of the decision that queued this attempt
    code_bundle: str | msgspec.UnsetType = msgspec.UNSET  # the workflow's source bundle, when registered with one
    # The workflow (name, version) whose bundle it is: the executor checks that it is registered with that bundle.
    workflow: tuple[str, str] | msgspec.UnsetType = msgspec.UNSET


class ChunkedAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a ``DispatchChunk``: what its ``Dispatch`` has that the chunk's other attempts do not share."""

    node: str
    attempt_id: str
    attempt: int
    task: str  # the workflow's key of its task, in the chunk's ``tasks``
    inputs: dict[str, Any]


class DispatchChunk(msgspec.Struct, frozen=True, kw_only=True, tag="dispatch_chunk.v1"):
    """Attempts one decision queued for one queue: of one execution, each task spec once."""

    execution_id: str
    project: str
    domain: str
    decision_sequence: int
    tasks: dict[str, TaskSpec]
    attempts: list[ChunkedAttempt]
    code_bundle: str | msgspec.UnsetType = msgspec.UNSET
    workflow: tuple[str, str] | msgspec.UnsetType = msgspec.UNSET

    def dispatches(self) -> list[Dispatch]:
        """Each attempt's dispatch; ``ValueError`` when an attempt names a task the chunk does not carry."""
        dispatches = []
        for item in self.attempts:
            task = self.tasks.get(item.task)
            if task is None:
                raise ValueError(f"attempt {item.attempt_id} names task '{item.task}', which the chunk does not carry")
            dispatches.append(
                Dispatch(
                    execution_id=self.execution_id,
                    project=self.project,
                    domain=self.domain,
                    node=item.node,
                    attempt_id=item.attempt_id,
                    attempt=item.attempt,
                    task=task,
                    inputs=item.inputs,
                    decision_sequence=self.decision_sequence,
                    code_bundle=self.code_bundle,
                    workflow=self.workflow,
                )
            )
        return dispatches


DispatchRecord = Dispatch | DispatchChunk
"""What a dispatch message holds."""


def dispatches_in(record: DispatchRecord) -> list[Dispatch]:
    """The attempts a dispatch message carries, in order; ``ValueError`` when the chunk is inconsistent."""
    if isinstance(record, Dispatch):
        return [record]
    if not record.attempts:
        raise ValueError("a dispatch chunk carries no attempt")
    return record.dispatches()


@dataclass(frozen=True)
class Chunk:
    """Attempts a decision queued for one (cluster, queue): the ``index``-th chunk of the ``of`` it queued there."""

    cluster: str
    queue: str
    index: int
    of: int  # attempts the decision queued for this (cluster, queue)
    events: tuple[NodeQueued, ...]

    def message_id(self, execution_id: str, decision_sequence: int) -> str:
        """The chunk's ``Nats-Msg-Id`` (before project and domain scope it): a lone attempt's is its attempt id, as
        for every dispatch before chunks; a chunk's names its decision, (cluster, queue) and place."""
        if self.of == 1:
            return self.events[0].attempt_id
        return f"{execution_id}/{decision_sequence}/{self.cluster}.{self.queue}/{self.index}"


def chunk_queued(
    events: Sequence[NodeQueued],
    default_cluster: str,
    most_attempts: int = DISPATCH_CHUNK_ATTEMPTS,
    most_bytes: int = DISPATCH_CHUNK_BYTES,
    least_chunks: int = DISPATCH_LEAST_CHUNKS,
    least_attempts: int = DISPATCH_CHUNK_LEAST_ATTEMPTS,
) -> list[Chunk]:
    """Cut the attempts one decision queued (``events``, in the decision's order) into chunks per (cluster, queue)
    (an event of no cluster runs on ``default_cluster``): at most ``most_attempts`` each, and no more than an even
    share of ``least_chunks`` chunks, but ``least_attempts`` where there are as many. The same events always give the
    same chunks."""
    by_queue: dict[tuple[str, str], list[NodeQueued]] = {}
    for event in events:
        by_queue.setdefault((event.cluster or default_cluster, event.queue), []).append(event)
    chunks: list[Chunk] = []
    for (cluster, queue), queued in by_queue.items():
        per_chunk = min(most_attempts, max(least_attempts, 1, math.ceil(len(queued) / max(least_chunks, 1))))
        current: list[NodeQueued] = []
        size = index = 0
        for event in queued:
            event_size = len(_encoder.encode(event.inputs))
            if current and (len(current) >= per_chunk or size + event_size > most_bytes):
                chunks.append(Chunk(cluster, queue, index, len(queued), tuple(current)))
                current, size, index = [], 0, index + 1
            current.append(event)
            size += event_size
        chunks.append(Chunk(cluster, queue, index, len(queued), tuple(current)))
    return chunks


def dispatch_of(state: Execution, event: NodeQueued, decision_sequence: int) -> Dispatch:
    """The dispatch record of the attempt ``event`` queued, in the decision stored at ``decision_sequence``."""
    return Dispatch(
        execution_id=state.execution_id,
        project=state.project,
        domain=state.domain,
        node=event.node,
        attempt_id=event.attempt_id,
        attempt=event.attempt,
        task=_task_of(state, event.task),
        inputs=event.inputs,
        decision_sequence=decision_sequence,
        code_bundle=state.workflow.code_bundle,
        workflow=_workflow_of(state),
    )


def record_of(state: Execution, events: Sequence[NodeQueued], decision_sequence: int) -> DispatchRecord:
    """The dispatch message of the attempts ``events`` queued (of one execution, one decision): a ``Dispatch`` for
    one, a ``DispatchChunk`` for more."""
    if len(events) == 1:
        return dispatch_of(state, events[0], decision_sequence)
    return DispatchChunk(
        execution_id=state.execution_id,
        project=state.project,
        domain=state.domain,
        decision_sequence=decision_sequence,
        tasks={event.task: _task_of(state, event.task) for event in events},
        attempts=[
            ChunkedAttempt(
                node=event.node,
                attempt_id=event.attempt_id,
                attempt=event.attempt,
                task=event.task,
                inputs=event.inputs,
            )
            for event in events
        ],
        code_bundle=state.workflow.code_bundle,
        workflow=_workflow_of(state),
    )


def _task_of(state: Execution, task: str) -> TaskSpec:
    return _with_timeout(state.workflow.tasks[task], task_timeout(state, task))


def _workflow_of(state: Execution) -> tuple[str, str] | msgspec.UnsetType:
    return (
        msgspec.UNSET if state.workflow.code_bundle is msgspec.UNSET else (state.workflow.name, state.workflow.version)
    )


def _with_timeout(task: TaskSpec, seconds: float | None) -> TaskSpec:
    """The task as its attempt runs it: with the execution's default timeout when it sets none (the executor's
    backstop and a Job's ``activeDeadlineSeconds`` read it from the dispatch)."""
    return task if seconds == task.timeout_seconds else msgspec.structs.replace(task, timeout_seconds=seconds)


_encoder = msgspec.json.Encoder()
