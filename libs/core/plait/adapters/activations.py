"""A launch plan's activation state on JetStream: its records (appended under the subject's last sequence, so two
writers cannot both change it from the same state), and its next fire (a message schedule)."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from plait.adapters.nats_errors import WRONG_LAST_SEQUENCE
from plait.adapters.scoped_reads import last_subject_message
from plait.core.activations import ActivationRecord, FireLaunchPlan
from plait.errors import ConflictError
from plait.protocol import subjects
from plait.protocol.headers import (
    FIRED_TTL,
    NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
    NATS_MSG_ID,
    NATS_SCHEDULE,
    NATS_SCHEDULE_TARGET,
    NATS_SCHEDULE_TTL,
)

activation_decoder = msgspec.json.Decoder(ActivationRecord)
fire_decoder = msgspec.json.Decoder(FireLaunchPlan)
_encoder = msgspec.json.Encoder()


async def activation_state(
    js: JetStreamContext, project: str, domain: str, launch_plan: str
) -> tuple[ActivationRecord | None, int]:
    """The plan's last activation record and its sequence; (None, 0) when it was never activated. Read from the
    stream leader: a lagging replica's older record would make a fire look superseded."""
    subject = subjects.activation_subject(project, domain, launch_plan)
    raw = await last_subject_message(js, subjects.EVENTS_STREAM, subject)  # a confined client's read too
    if raw is None or raw.data is None or raw.seq is None:
        return None, 0
    return activation_decoder.decode(raw.data), raw.seq


async def append_activation(js: JetStreamContext, record: ActivationRecord, expected_sequence: int) -> int:
    """Append ``record`` if the plan's subject is still at ``expected_sequence``; returns its sequence. Raises
    ``ConflictError`` when another record came first."""
    subject = subjects.activation_subject(record.project, record.domain, record.launch_plan)
    try:
        ack = await js.publish(
            subject,
            _encoder.encode(record),
            headers={NATS_EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected_sequence)},
            stream=subjects.EVENTS_STREAM,
        )
    except nats.js.errors.APIError as exc:
        if exc.err_code == WRONG_LAST_SEQUENCE:
            raise ConflictError(f"launch plan {record.launch_plan} was activated or deactivated meanwhile") from exc
        raise
    return ack.seq


async def schedule_fire(js: JetStreamContext, command: FireLaunchPlan, now: datetime) -> None:
    """Have the server send ``command`` at its fire time (replacing the plan's pending fire), or send it now when
    that time has come."""
    headers = {NATS_MSG_ID: subjects.scoped_id(command.project, command.domain, command.command_id)}
    target = subjects.fire_subject(command.project, command.domain, command.launch_plan)
    data = _encoder.encode(command)
    if command.fire_at <= now:
        await js.publish(target, data, headers=headers, stream=subjects.COMMANDS_STREAM)
        return
    fire_at = datetime.fromtimestamp(math.ceil(command.fire_at.timestamp()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await js.publish(
        subjects.launch_plan_schedule_subject(command.project, command.domain, command.launch_plan),
        data,
        headers={
            NATS_SCHEDULE: f"@at {fire_at}",
            NATS_SCHEDULE_TARGET: subjects.fired_subject(target),
            NATS_SCHEDULE_TTL: FIRED_TTL,
        },
        stream=subjects.TIMERS_STREAM,
    )


async def pending_fire_message(
    js: JetStreamContext, project: str, domain: str, launch_plan: str
) -> RawStreamMsg | None:
    """The message schedule of the plan's fire set and not sent yet, if any."""
    subject = subjects.launch_plan_schedule_subject(project, domain, launch_plan)
    try:
        return await js.get_msg(subjects.TIMERS_STREAM, subject=subject)
    except nats.js.errors.NotFoundError:
        return None


async def pending_fire(js: JetStreamContext, project: str, domain: str, launch_plan: str) -> FireLaunchPlan | None:
    """The plan's fire set and not sent yet, if any."""
    pending = await pending_fire_message(js, project, domain, launch_plan)
    return None if pending is None else fire_decoder.decode(pending.data or b"")


async def cancel_fire(js: JetStreamContext, project: str, domain: str, launch_plan: str) -> None:
    """Remove the plan's pending fire, if any (a fire that was sent already finds the plan deactivated).

    The subject holds one message schedule at most (setting it again replaces it): deleting that message by its
    sequence removes the schedule. Not a purge, which the services may not do on this stream (a purge's subject
    cannot be confined; deploy/nats/tenants.conf). A fire set again meanwhile by a replica that had not seen the
    deactivation is at another sequence: it fires once and finds the plan deactivated."""
    pending = await pending_fire_message(js, project, domain, launch_plan)
    if pending is not None and pending.seq is not None:
        with contextlib.suppress(nats.js.errors.NotFoundError):  # fired (or replaced) since
            await js.delete_msg(subjects.TIMERS_STREAM, pending.seq)
