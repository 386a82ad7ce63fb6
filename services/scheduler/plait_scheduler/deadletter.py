"""Keeping rejected commands aside, and telling their sender why."""

from __future__ import annotations

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait import codec
from plait.adapters.deadletters import without_server_headers
from plait.metrics.names import DEAD_LETTERS
from plait.protocol import subjects
from plait.protocol.headers import (
    PLAIT_COMMAND_ID,
    PLAIT_ERROR,
    PLAIT_ORIGINAL_SUBJECT,
    PLAIT_REPLY_TO,
    PLAIT_TRUNCATED_FROM,
    header_bytes,
)
from plait.protocol.partitions import is_partition_consumer
from plait.protocol.rejections import Rejection

log = structlog.get_logger()

HEADER_ROOM_BYTES = 256  # the status line, the publish's own headers and a truncation note


async def reject(nc: NATS, js: JetStreamContext, msg: Msg, command_id: str, reason: str) -> None:
    """Store the original message on the dead-letter stream with the reason, then reply to its sender.

    Its ``Nats-*`` headers are left out: they would tell the server how to store the copy (an expected sequence, a
    message id, a schedule) and could refuse it. The command id is kept as ``Plait-Command-Id``. A command too large
    to be stored with these headers is kept cut to what fits, its size in ``Plait-Truncated-From``.
    """
    headers = without_server_headers(msg.headers)
    headers.update(
        {
            PLAIT_ERROR: _header_value(reason[:4000]),
            PLAIT_ORIGINAL_SUBJECT: sent_on(msg),
            PLAIT_COMMAND_ID: _header_value(command_id[:1000]),
        }
    )
    data = msg.data
    room = nc.max_payload - HEADER_ROOM_BYTES - header_bytes(headers)
    if len(data) > room:
        headers[PLAIT_TRUNCATED_FROM] = str(len(data))
        data = data[: max(room, 0)]
    letter = subjects.dead_letter_subject(sent_on(msg))
    await js.publish(letter, data, headers=headers, stream=subjects.DEAD_LETTER_STREAM)
    DEAD_LETTERS.inc()
    target = subjects.execution_of_command_subject(msg.subject)
    log.warning(
        "command_rejected",
        execution=target[2] if target else None,
        subject=msg.subject,
        command_id=command_id,
        reason=reason,
    )
    reply_to = (msg.headers or {}).get(PLAIT_REPLY_TO)
    if reply_to:
        rejection = codec.encode(Rejection(command_id=command_id, subject=msg.subject, reason=reason))
        try:
            await nc.publish(reply_to, rejection)
        except nats.errors.Error as exc:  # a reply subject no one can publish to: the dead letter is what counts
            log.warning("rejection_not_sent", subject=msg.subject, reply_to=reply_to[:200], error=repr(exc))


def sent_on(msg: Msg) -> str:
    """The subject a command message was sent on: as stored, unless a partition's consumer delivered it (the stream
    then stored it with its partition, ``plait.protocol.partitions``)."""
    try:
        consumer = msg.metadata.consumer
    except (nats.errors.Error, ValueError, AttributeError):  # not a JetStream delivery: as stored
        return msg.subject
    return subjects.without_partition(msg.subject) if is_partition_consumer(consumer) else msg.subject


def _header_value(text: str) -> str:
    """``text`` on one line: a line break would end the header (or forge another)."""
    return " ".join(text.splitlines())
