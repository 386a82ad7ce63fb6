"""Every message header plait writes or reads: its own ``Plait-*`` ones, and the NATS and JetStream ones it sets or
acts on. ``MEANINGS`` gives each its one-line meaning (``plait schema export`` and docs/wire-format.md list them)."""

from __future__ import annotations

from plait import codec
from plait.protocol.signing import PLAIT_KEY, PLAIT_SIG

PLAIT_REPLY_TO = "Plait-Reply-To"
PLAIT_ERROR = "Plait-Error"
PLAIT_ORIGINAL_SUBJECT = "Plait-Original-Subject"
PLAIT_COMMAND_ID = "Plait-Command-Id"
PLAIT_TRUNCATED_FROM = "Plait-Truncated-From"
CONTENT_TYPE = codec.CONTENT_TYPE
PLAIT_ATTEMPT = "Plait-Attempt"
PLAIT_OUTPUT_OFFSET = "Plait-Output-Offset"
PLAIT_OUTPUT_END = "Plait-Output-End"
PLAIT_ATTEMPTS = "Plait-Attempts"
PLAIT_LOST_DELIVERIES = "Plait-Lost-Deliveries"
TRACEPARENT = "traceparent"  # W3C trace context, written and read by plait.telemetry through OpenTelemetry

NATS_MSG_ID = "Nats-Msg-Id"
NATS_EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
NATS_EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
NATS_EXPECTED_STREAM = "Nats-Expected-Stream"
NATS_SCHEDULE = "Nats-Schedule"
NATS_SCHEDULE_TARGET = "Nats-Schedule-Target"
NATS_SCHEDULE_TTL = "Nats-Schedule-TTL"
FIRED_TTL = "1h"
"""How long a timer's fired copy stays in the timers stream (the commands stream sources it within milliseconds)."""
NATS_SUBJECT = "Nats-Subject"
NATS_SEQUENCE = "Nats-Sequence"
NATS_STREAM = "Nats-Stream"
NATS_NUM_PENDING = "Nats-Num-Pending"
NATS_LAST_SEQUENCE = "Nats-Last-Sequence"
NATS_PIN_ID = "Nats-Pin-Id"
STATUS = "Status"
DESCRIPTION = "Description"

SERVER_PREFIX = "nats-"
"""Headers whose name starts so (in any case) tell the server how to store a message; a copy must not carry them."""

MEANINGS: dict[str, str] = {
    PLAIT_REPLY_TO: "on a command: an inbox where a scheduler that refuses the command publishes a Rejection",
    PLAIT_ERROR: "on a dead letter: why the scheduler refused the command (on an executor's: why it was unreadable)",
    PLAIT_ORIGINAL_SUBJECT: "on a dead letter: the subject the refused message was sent to",
    PLAIT_COMMAND_ID: "on a dead letter: the refused command's id (its Nats-Msg-Id when it did not decode)",
    PLAIT_TRUNCATED_FROM: "on a dead letter kept cut to what fits: the original's size in bytes",
    PLAIT_ATTEMPT: "on live output: the attempt that wrote it",
    PLAIT_OUTPUT_OFFSET: "on live output: where in the attempt's output this chunk starts, in bytes",
    PLAIT_OUTPUT_END: "on live output: the attempt has ended, having written this many bytes (the chunk is empty)",
    PLAIT_ATTEMPTS: "on a dispatch chunk handed on by an executor: the ids of the attempts (comma-separated) to run",
    PLAIT_LOST_DELIVERIES: "on a dispatch handed on: the deliveries of the messages it was cut from whose executor was "
    "lost, counted toward the executors' delivery limit",
    CONTENT_TYPE: f"on a command: '{codec.MSGPACK}' for MessagePack; anything else or none: JSON",
    NATS_MSG_ID: "the id JetStream stores once within its duplicate window (2 minutes)",
    NATS_EXPECTED_LAST_SUBJECT_SEQUENCE: "store only if the subject's last message is still at this sequence",
    NATS_EXPECTED_LAST_SEQUENCE: "store only if the stream's last message is at this sequence (never copied)",
    NATS_EXPECTED_STREAM: "store only in this stream (set by a publish that names its stream)",
    NATS_SCHEDULE: "a message schedule: '@at <RFC 3339 time>', when the server publishes the message's copy",
    NATS_SCHEDULE_TARGET: "a message schedule: the subject the server publishes the copy to",
    NATS_SCHEDULE_TTL: "a message schedule: how long the copy is kept (a fired timer: an hour)",
    NATS_SUBJECT: "on a direct get's answer: the message's subject",
    NATS_SEQUENCE: "on a direct get's answer: the message's stream sequence",
    NATS_STREAM: "on a direct get's answer: the message's stream",
    NATS_NUM_PENDING: "on a batched direct get's answer: the messages left after this batch",
    NATS_LAST_SEQUENCE: "on a batched direct get's answer: the sequence of the message before this one in the batch",
    NATS_PIN_ID: "on a message of a partition's consumer: the pin of the replica it is delivered to (priority groups)",
    STATUS: "on a server's status message (no body): its code, e.g. 404 no messages, 408 request expired",
    DESCRIPTION: "on a server's status message: the code's description",
    TRACEPARENT: "on a command, decision or dispatch: the W3C trace context of the execution's trace (optional)",
    PLAIT_SIG: "on a decision, registration, cache record or dispatch: the Ed25519 signature (base64) of its subject "
    "and bytes (plait.protocol.signing)",
    PLAIT_KEY: "with Plait-Sig: the id of the key that signed (16 hex digits of its public key's SHA-256)",
}


def header_bytes(headers: dict[str, str]) -> int:
    """The size of ``headers`` on the wire: a status line, one line each, and a blank line. The server counts it
    within its ``max_payload``; nats-py checks the payload alone."""
    return len("NATS/1.0\r\n\r\n") + sum(len(name) + len(value) + 4 for name, value in headers.items())
