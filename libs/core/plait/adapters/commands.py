"""Publishing commands to the command stream, idempotently (``Nats-Msg-Id`` = command id)."""

from __future__ import annotations

from nats.js import JetStreamContext

from plait import codec
from plait.adapters import subjects
from plait.core.commands import (
    AbortExecution,
    Command,
    LaunchExecution,
    ReportAttemptResult,
    ReportAttemptStarted,
)

KIND_OF_COMMAND: dict[type, str] = {
    LaunchExecution: "launch",
    ReportAttemptStarted: "started",
    ReportAttemptResult: "result",
    AbortExecution: "abort",
}

REPLY_TO_HEADER = "Plait-Reply-To"


def subject_of(command: Command, project: str, domain: str) -> str:
    return subjects.command_subject(project, domain, command.execution_id, KIND_OF_COMMAND[type(command)])


async def publish_command(
    js: JetStreamContext, command: Command, project: str, domain: str, reply_to: str | None = None
) -> int:
    """Store the command durably; returns its stream sequence. A repeated command id is stored once."""
    headers = {"Nats-Msg-Id": command.command_id}
    if reply_to:
        headers[REPLY_TO_HEADER] = reply_to
    ack = await js.publish(
        subject_of(command, project, domain), codec.encode(command), headers=headers, stream=subjects.COMMANDS_STREAM
    )
    return ack.seq
