"""Stored records of an execution's subject, built in memory exactly as the event store writes them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from plait import codec
from plait.core.events import Decision, Event
from plait.protocol import subjects
from plait.replay import Record

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stored_record(subject: str, decision: Decision, sequence: int) -> Record:
    """``decision`` as stored at ``sequence`` on ``subject``, with the ``Nats-Msg-Id`` the event store gives it."""
    data = codec.encode(decision)
    return Record(sequence=sequence, subject=subject, data=data, msg_id=codec.digest(data))


def history(
    execution_id: str, decisions: Sequence[Sequence[Event]], project: str = "tests", domain: str = "dev"
) -> list[Record]:
    """The records of an execution whose decisions held these events, chained one to the next."""
    subject = subjects.execution_subject(project, domain, execution_id)
    records: list[Record] = []
    for index, events in enumerate(decisions):
        decision = Decision(
            execution_id=execution_id,
            at=T0 + timedelta(seconds=index),
            replica="test",
            commands=(f"command-{index}",),
            previous=codec.digest(records[-1].data) if records else "",
            events=tuple(events),
        )
        records.append(stored_record(subject, decision, sequence=index + 1))
    return records
