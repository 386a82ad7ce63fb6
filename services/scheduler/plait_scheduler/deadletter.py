"""Keeping rejected commands aside, and telling their sender why."""

from __future__ import annotations

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait import codec
from plait.adapters import subjects
from plait.adapters.commands import REPLY_TO_HEADER

log = structlog.get_logger()


class Rejection(msgspec.Struct, frozen=True):
    """What a sender receives on its ``Plait-Reply-To`` subject when its command was refused."""

    command_id: str
    subject: str
    reason: str
    type: str = "command_rejected"


async def reject(nc: NATS, js: JetStreamContext, msg: Msg, command_id: str, reason: str) -> None:
    """Store the original message on the dead-letter stream with the reason, then reply to its sender.

    Its ``Nats-*`` headers are left out: they would tell the server how to store the copy (an expected sequence, a
    message id, a schedule) and could refuse it. The command id is kept as ``Plait-Command-Id``.
    """
    headers = {name: value for name, value in (msg.headers or {}).items() if not name.lower().startswith("nats-")}
    headers.update(
        {
            "Plait-Error": _header_value(reason[:4000]),
            "Plait-Original-Subject": msg.subject,
            "Plait-Command-Id": _header_value(command_id[:1000]),
        }
    )
    await js.publish(
        subjects.dead_letter_subject(msg.subject), msg.data, headers=headers, stream=subjects.DEAD_LETTER_STREAM
    )
    target = subjects.execution_of_command_subject(msg.subject)
    log.warning(
        "command_rejected",
        execution=target[2] if target else None,
        subject=msg.subject,
        command_id=command_id,
        reason=reason,
    )
    reply_to = (msg.headers or {}).get(REPLY_TO_HEADER)
    if reply_to:
        await nc.publish(reply_to, codec.encode(Rejection(command_id=command_id, subject=msg.subject, reason=reason)))


def _header_value(text: str) -> str:
    """``text`` on one line: a line break would end the header (or forge another)."""
    return " ".join(text.splitlines())
