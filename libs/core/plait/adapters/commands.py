"""Publishing commands to the command stream, idempotently (``Nats-Msg-Id`` = project, domain and command id)."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck

from plait import codec
from plait.adapters.connection import route_of
from plait.core.commands import (
    AbortExecution,
    AttemptDeadline,
    AttemptTimeout,
    Command,
    ExecutionTimeout,
    GateTimer,
    LaunchExecution,
    ReportAttemptResult,
    ReportAttemptResults,
    ReportAttemptStarted,
    ReportAttemptStopped,
    ReportCacheLookup,
    ReportCacheLookups,
    ReportChildEnded,
    RetryDue,
    SendSignal,
)
from plait.protocol import subjects
from plait.protocol.headers import (
    FIRED_TTL,
    NATS_MSG_ID,
    NATS_SCHEDULE,
    NATS_SCHEDULE_TARGET,
    NATS_SCHEDULE_TTL,
    PLAIT_REPLY_TO,
    header_bytes,
)
from plait.telemetry import inject

KIND_OF_COMMAND: dict[type, str] = {
    LaunchExecution: "launch",
    ReportAttemptStarted: "started",
    ReportAttemptResult: "result",
    ReportAttemptResults: "result",
    ReportCacheLookup: "cache",
    ReportCacheLookups: "cache",
    RetryDue: "retry",
    AttemptDeadline: "deadline",
    AttemptTimeout: "timeout",
    ExecutionTimeout: "timeout",
    AbortExecution: "abort",
    ReportAttemptStopped: "stopped",
    SendSignal: "signal",
    GateTimer: "timeout",
    ReportChildEnded: "child",
}


def subject_of(command: Command, project: str, domain: str, scope: str = "") -> str:
    return subjects.command_subject(project, domain, command.execution_id, KIND_OF_COMMAND[type(command)], scope)


def msg_id_of(command: Command, project: str, domain: str) -> str:
    """The command's ``Nats-Msg-Id``: its id within its project and domain, where its execution id is unique (the
    same id in another project is another execution, whose commands must not be dropped as duplicates)."""
    return subjects.scoped_id(project, domain, command.command_id)


def encoded_to_fit(js: JetStreamContext, command: Command, headers: dict[str, str]) -> bytes:
    """The command's bytes; ``MaxPayloadError`` when they and ``headers`` exceed the server's ``max_payload``, which
    counts headers too. nats-py checks the payload alone, and a message it lets through that the server refuses
    closes the connection for good."""
    data = codec.encode(command)
    if len(data) + header_bytes(headers) > route_of(js).nc.max_payload:
        raise nats.errors.MaxPayloadError
    return data


async def publish_command(
    js: JetStreamContext,
    command: Command,
    project: str,
    domain: str,
    reply_to: str | None = None,
    scope: str = "",
) -> PubAck:
    """Store the command durably; returns JetStream's acknowledgement. A repeated command id is stored once (the
    acknowledgement of a repeat says ``duplicate``, with the sequence of the first). ``scope``: that of a task's
    process, for its attempt's reports (``subjects.command_subject``)."""
    headers = inject({NATS_MSG_ID: msg_id_of(command, project, domain)})
    if reply_to:
        headers[PLAIT_REPLY_TO] = reply_to
    ack = await js.publish(
        subject_of(command, project, domain, scope),
        encoded_to_fit(js, command, headers),
        headers=headers,
        stream=subjects.COMMANDS_STREAM,
    )
    return ack


async def send_command(js: JetStreamContext, command: Command, project: str, domain: str) -> asyncio.Future[PubAck]:
    """Put the command on the wire and return at once: the future resolves when JetStream has stored it.

    Messages sent on one connection are stored in the order they were sent, so a command sent after this one
    is stored after it (unless this one is lost and sent again). The future has no deadline of its own.
    """
    headers = inject({NATS_MSG_ID: msg_id_of(command, project, domain)})
    future: asyncio.Future[PubAck] = await js.publish_async(
        subject_of(command, project, domain),
        encoded_to_fit(js, command, headers),
        headers=headers,
        stream=subjects.COMMANDS_STREAM,
    )
    return future


async def schedule_command(
    js: JetStreamContext, command: Command, project: str, domain: str, timer: str, at: datetime
) -> None:
    """Have the server itself publish ``command`` at ``at`` (a JetStream message schedule), whoever is running then.

    One timer per (execution, ``timer``): scheduling it again replaces it. It fires at a whole second, not before
    ``at``.
    """
    fire_at = datetime.fromtimestamp(math.ceil(at.timestamp()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await js.publish(
        subjects.schedule_subject(project, domain, command.execution_id, timer),
        codec.encode(command),
        headers=inject(
            {
                NATS_SCHEDULE: f"@at {fire_at}",
                NATS_SCHEDULE_TARGET: subjects.fired_subject(subject_of(command, project, domain)),
                NATS_SCHEDULE_TTL: FIRED_TTL,
            }
        ),
        stream=subjects.TIMERS_STREAM,
    )
