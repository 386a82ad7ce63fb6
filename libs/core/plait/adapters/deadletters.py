"""The dead-letter stream as operators see it: rejected commands, why, and sending them again.

A scheduler keeps a command it refused on ``plait.dlq.<original subject>``, a copy of the original with
``Plait-Error`` (the reason) and ``Plait-Original-Subject`` headers. Redriving publishes the original command
again to its subject, with a new ``Nats-Msg-Id`` (the old one may still be in the duplicate window), then
deletes the dead letter; refused again, it comes back as a new dead letter.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from plait.adapters.stream_reads import read_messages
from plait.errors import NotFound
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID, PLAIT_ERROR, PLAIT_ORIGINAL_SUBJECT, SERVER_PREFIX

_NOT_REPUBLISHED = {PLAIT_ERROR, PLAIT_ORIGINAL_SUBJECT}


def without_server_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """``headers`` less the ``Nats-*`` ones: expectations, schedules, ids, what the server acts on when a message
    is stored, so a copy must not carry them (they could make the stream refuse it)."""
    return {name: value for name, value in (headers or {}).items() if not name.lower().startswith(SERVER_PREFIX)}


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A rejected command: where it was sent, why it was refused, and its bytes."""

    sequence: int
    original_subject: str
    reason: str
    stored_at: datetime | None
    headers: dict[str, str]
    data: bytes


async def count(js: JetStreamContext) -> int:
    """How many dead letters the stream holds."""
    info = await js.stream_info(subjects.DEAD_LETTER_STREAM)
    return info.state.messages


async def read_all(js: JetStreamContext) -> list[DeadLetter]:
    """Every dead letter, oldest first."""
    return await _read(js, 1)


async def newest(js: JetStreamContext, limit: int) -> list[DeadLetter]:
    """The ``limit`` newest dead letters (fewer when some were redriven), oldest first."""
    info = await js.stream_info(subjects.DEAD_LETTER_STREAM)
    return await _read(js, max(info.state.first_seq, info.state.last_seq - limit + 1))


async def _read(js: JetStreamContext, start: int) -> list[DeadLetter]:
    messages = await read_messages(js, subjects.DEAD_LETTER_STREAM, f"{subjects.DEAD_LETTER_ROOT}.>", start)
    return [
        _dead_letter(
            message.metadata.sequence.stream, message.subject, message.headers, message.data, message.metadata.timestamp
        )
        for message in messages
    ]


async def get(js: JetStreamContext, sequence: int) -> DeadLetter:
    """The dead letter at ``sequence``; raises ``NotFound`` when there is none."""
    try:
        raw: RawStreamMsg = await js.get_msg(subjects.DEAD_LETTER_STREAM, sequence)
    except nats.js.errors.NotFoundError:
        raise NotFound(f"no dead letter at sequence {sequence}") from None
    return _dead_letter(sequence, raw.subject or "", raw.headers, raw.data or b"", raw.time)


async def redrive(js: JetStreamContext, letter: DeadLetter) -> int:
    """Publish the original command again, then delete its dead letter; returns the command's new sequence."""
    headers = {
        key: value for key, value in without_server_headers(letter.headers).items() if key not in _NOT_REPUBLISHED
    }
    headers[NATS_MSG_ID] = f"redrive:{letter.sequence}:{uuid.uuid4().hex}"
    ack = await js.publish(letter.original_subject, letter.data, headers=headers, stream=subjects.COMMANDS_STREAM)
    await js.delete_msg(subjects.DEAD_LETTER_STREAM, letter.sequence)
    return ack.seq


def _dead_letter(
    sequence: int, subject: str, headers: dict[str, str] | None, data: bytes, stored_at: datetime | None
) -> DeadLetter:
    headers = dict(headers or {})
    original = headers.get(PLAIT_ORIGINAL_SUBJECT) or subject.removeprefix(f"{subjects.DEAD_LETTER_ROOT}.")
    return DeadLetter(
        sequence=sequence,
        original_subject=original,
        reason=headers.get(PLAIT_ERROR, ""),
        stored_at=stored_at,
        headers=headers,
        data=data,
    )
