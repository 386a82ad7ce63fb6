"""Signed checkpoints of executions' chain heads in their own stream, which auditors copy elsewhere.

A scheduler replica publishes one after every decision that ends an execution and after every ``EVERY``-th
decision of an execution, signed with its key; each is derived from the log alone (the decision it has just
appended). A checkpoint lost to a crash is covered by the next one; none is published without a signing key.
"""

from __future__ import annotations

import msgspec
import structlog
from nats.js import JetStreamContext

from plait import codec
from plait.adapters.stream_reads import read_messages
from plait.core.state import Execution
from plait.protocol import signing, subjects
from plait.protocol.headers import NATS_MSG_ID
from plait.protocol.signing import Checkpoint, SignedCheckpoint

EVERY = 100  # decisions of an execution between two checkpoints, besides the one at its end
_decoder = msgspec.json.Decoder(SignedCheckpoint)


def wants(state: Execution, ended: bool) -> bool:
    return signing.process_signer() is not None and (ended or state.decisions % EVERY == 0)


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
    """Publish the signed head of the execution's chain; a failure is logged, the next checkpoint covers it."""
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
            "checkpoint_not_published", execution_id=state.execution_id, sequence=state.last_sequence, error=str(exc)
        )


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
