"""Replay: an execution's state rebuilt from its stored decisions, at any point of its history.

``replay`` runs the same pure core as the scheduler (``apply_decision``) over the records of an
execution's subject, as read from the log (``AsyncClient.records``) or from a file; ``timeline``
lists every transition with who decided it, when, and which commands caused it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import msgspec
from nats.js.api import RawStreamMsg

from plait import codec
from plait.core.children import child_story
from plait.core.dynamic import generated_summary
from plait.core.events import (
    AttemptFailed,
    AttemptStopped,
    BranchTaken,
    ChildLaunched,
    Decision,
    DynamicExpanded,
    Event,
    ExecutionAborted,
    ExecutionLaunched,
    GateOpened,
    NodeRecovered,
    NodeSkipped,
    SignalReceived,
    TaskError,
)
from plait.core.gates import gate_story
from plait.core.state import Execution, apply_decision
from plait.errors import NotFound, PlaitError
from plait.protocol.headers import NATS_MSG_ID
from plait.protocol.signing import PLAIT_KEY, PLAIT_SIG


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off while a history is decoded and applied, then back on.

    Decoding and applying a long history allocates millions of objects and no reference cycles, so
    the collector's passes over the growing heap are pure cost: about a third of the time of a
    1,000,000-event replay. Memory is still freed by reference counting. Leaves the collector alone
    when it is already off (a caller's choice, or an enclosing pause).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One message of an execution's subject as stored: stream sequence, subject, bytes.

    ``msg_id`` is the ``Nats-Msg-Id`` header it was published with (the SHA-256 of the bytes as
    written), when known.
    """

    sequence: int
    subject: str
    data: bytes
    msg_id: str = ""
    signature: str = ""  # its Plait-Sig header (plait.signing), when it was signed
    key_id: str = ""  # its Plait-Key header: the id of the key that signed it


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One event of an execution's history: what happened, to which node and attempt, who decided it, when."""

    sequence: int
    index: int  # position of the decision on the execution's subject, from 0
    at: datetime
    replica: str
    commands: tuple[str, ...]
    event: str
    node: str | None = None
    attempt_id: str | None = None
    detail: str = ""  # why, for a failure: its message, and the retry budget it counted against


def decisions(
    records: Iterable[Record], *, at_sequence: int | None = None, at_time: datetime | None = None
) -> Iterator[tuple[Record, Decision]]:
    """Each record with its decoded (and upcast) decision, up to ``at_sequence`` and ``at_time``.

    Raises ``PlaitError`` naming the record that does not decode (``plait audit verify`` says more).
    """
    for index, record in enumerate(records):
        if at_sequence is not None and record.sequence > at_sequence:
            return
        try:
            decision = codec.decision_decoder.decode(record.data)
        except msgspec.DecodeError as exc:
            raise PlaitError(f"record {index} (sequence {record.sequence}) of {record.subject}: {exc}") from exc
        if at_time is not None and decision.at > at_time:
            return
        yield record, decision


def replay(records: Iterable[Record], *, at_sequence: int | None = None, at_time: datetime | None = None) -> Execution:
    """The execution's state after its last decision at or before ``at_sequence`` and ``at_time``.

    Without either, the state after all of ``records``. Raises ``NotFound`` when nothing was launched
    by that point.
    """
    state: Execution | None = None
    with paused_gc():
        for record, decision in decisions(records, at_sequence=at_sequence, at_time=at_time):
            state = apply_decision(state, decision, record.sequence, codec.digest(record.data))
    if state is None:
        limits = []
        if at_sequence is not None:
            limits.append(f"sequence {at_sequence}")
        if at_time is not None:
            limits.append(at_time.isoformat())
        raise NotFound("no launched execution in the log" + (f" up to {' and '.join(limits)}" if limits else ""))
    return state


def _event_fields(event: Event) -> dict[str, Any]:
    fields = {"node": getattr(event, "node", None), "attempt_id": getattr(event, "attempt_id", None)}
    return {key: value for key, value in fields.items() if isinstance(value, str)} | {"detail": _detail(event)}


def _lifecycle_detail(event: Event) -> str | None:
    """Why an execution was aborted and by whom, a node skipped or recovered, an attempt stopped; where a launch
    came from (a relaunch or recovery). None for other events."""
    match event:
        case ExecutionAborted(reason=reason, aborted_by=by):
            return f"{reason} (by {by})" if by else reason
        case NodeSkipped(reason=reason) | AttemptStopped(reason=reason):
            return reason
        case NodeRecovered(source_execution=source):
            return f"outputs of execution {source}"
        case ExecutionLaunched(parent_execution=parent, parent_node=parent_node) if parent:
            return f"child of execution {parent} (node '{parent_node}')"
        case ExecutionLaunched(relaunch_of=relaunched) if relaunched:
            return f"relaunch of {relaunched}"
        case ExecutionLaunched(recovered_from=recovered) if recovered:
            return f"recovery of {recovered}"
        case DynamicExpanded():
            return generated_summary(event)
    return None


def _detail(event: Event) -> str:
    """A failure's message, and for a failed attempt the retries its budget has left (e.g. "timed out after 5 s;
    retries: 1 left")."""
    if isinstance(event, BranchTaken):
        return f"case {event.case} taken: {event.condition}"
    if isinstance(event, NodeSkipped) and event.branch:
        return f"branch '{event.branch}' took another case"
    if isinstance(event, GateOpened | SignalReceived):
        return gate_story(event)
    if isinstance(event, ChildLaunched):
        return child_story(event)
    if (lifecycle := _lifecycle_detail(event)) is not None:
        return lifecycle
    error = getattr(event, "error", None)
    if not isinstance(error, TaskError):
        return ""
    if isinstance(event, AttemptFailed) and event.budget:
        left = f"{event.retries_left} left" if event.retries_left >= 0 else "none left"
        return f"{error.message}; {event.budget}: {left}"
    return error.message


def timeline(
    records: Iterable[Record], *, at_sequence: int | None = None, at_time: datetime | None = None
) -> list[Transition]:
    """Every event of the execution in order (up to ``at_sequence`` and ``at_time``), each with its
    decision's sequence, time, replica and commands."""
    return [
        Transition(
            sequence=record.sequence,
            index=index,
            at=decision.at,
            replica=decision.replica,
            commands=decision.commands,
            event=str(type(event).__struct_config__.tag),
            **_event_fields(event),
        )
        for index, (record, decision) in enumerate(decisions(records, at_sequence=at_sequence, at_time=at_time))
        for event in decision.events
    ]


def record_of(raw: RawStreamMsg, subject: str) -> Record:
    """The record of a stored message, with its id and signature headers."""
    assert raw.seq is not None and raw.data is not None  # noqa: S101  a stored message has both
    headers = raw.headers or {}
    return Record(
        sequence=raw.seq,
        subject=raw.subject or subject,
        data=raw.data,
        msg_id=headers.get(NATS_MSG_ID, ""),
        signature=headers.get(PLAIT_SIG, ""),
        key_id=headers.get(PLAIT_KEY, ""),
    )
