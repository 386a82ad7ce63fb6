"""Signed checkpoints of executions' chain heads in their own stream, which auditors copy elsewhere.

A checkpoint is written after every decision that ends an execution and after every ``EVERY``-th decision of an
execution, signed with the scheduler's key; each is derived from the log alone (the chain head the decision made).
It is part of the decision's side work (``plait_scheduler.outbox``): the deciding replica publishes it, and a decision
that ended an execution whose checkpoint is not stored (the publish failed, the replica died first) is left to the
outbox of any replica, which publishes it until it is stored. ``Nats-Msg-Id`` (the chain head's subject and sequence)
makes a checkpoint published again within the duplicate window a no-op; past it, a second copy of the same signed head
changes nothing an auditor checks. A periodic checkpoint the deciding replica could not store is covered by the next
one and by the one at the end. None is published without a signing key.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import structlog
from nats.js import JetStreamContext

from plait import codec
from plait.adapters.stream_reads import read_messages
from plait.core.events import TERMINAL_EVENTS, Event
from plait.core.state import Execution
from plait.protocol import signing, subjects
from plait.protocol.headers import NATS_MSG_ID
from plait.protocol.signing import Checkpoint, SignedCheckpoint

EVERY = 100  # decisions of an execution between two checkpoints, besides the one at its end
_decoder = msgspec.json.Decoder(SignedCheckpoint)


def wants(state: Execution, events: Sequence[Event]) -> bool:
    """Whether the decision of ``events``, which brought the execution to ``state``, is checkpointed."""
    return signing.process_signer() is not None and (ends(events) or state.decisions % EVERY == 0)


def ends(events: Sequence[Event]) -> bool:
    """Whether these events end their execution: the checkpoint at the end, which the outbox makes sure of."""
    return signing.process_signer() is not None and any(isinstance(event, TERMINAL_EVENTS) for event in events)


def checkpoint_of_state(state: Execution) -> Checkpoint:
    """The head of the execution's chain after the decision just appended: its count, sequence and digest."""
    return Checkpoint(
        execution_id=state.execution_id,
        subject=subjects.execution_subject(state.project, state.domain, state.execution_id),
        count=state.decisions,
        sequence=state.last_sequence,
        digest=state.last_digest,
    )


async def publish_checkpoint(js: JetStreamContext, state: Execution) -> None:
    """Publish the signed head of the execution's chain and wait until it is stored; a failure is logged and raised
    (the caller leaves it to be done again)."""
    signer = signing.process_signer()
    if signer is None:
        return
    signed = signing.sign_checkpoint(signer, checkpoint_of_state(state))
    subject = subjects.checkpoint_subject(state.project, state.domain, state.execution_id)
    headers = {NATS_MSG_ID: f"{signed.checkpoint.subject}/{signed.checkpoint.sequence}"}
    try:
        await js.publish(subject, codec.encode(signed), headers=headers, stream=subjects.CHECKPOINTS_STREAM)
    except Exception as exc:
        structlog.get_logger().warning(
            "checkpoint_not_published",
            execution_id=state.execution_id,
            sequence=state.last_sequence,
            error=str(exc) or type(exc).__name__,
        )
        raise


async def read_checkpoints(
    js: JetStreamContext, project: str, domain: str, execution_id: str = "*"
) -> list[SignedCheckpoint]:
    """The signed checkpoints of an execution (or, with ``*``, of every execution of the project and domain);
    a record that does not decode is left out (verification then misses what it would have shown)."""
    subject = f"{subjects.CHECKPOINT_ROOT}.{subjects.tenant(project, domain)}.{execution_id}"
    found = []
    for message in await read_messages(js, subjects.CHECKPOINTS_STREAM, subject):
        try:
            found.append(_decoder.decode(message.data))
        except msgspec.DecodeError:
            structlog.get_logger().warning("checkpoint_undecodable", subject=message.subject)
    return found
