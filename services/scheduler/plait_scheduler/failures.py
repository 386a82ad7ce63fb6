"""One policy for a command that could not be decided: wrong input is dead-lettered at once; anything else is
retried with exponential back-off, and dead-lettered with its reason on the consumer's last delivery."""

from __future__ import annotations

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait.errors import DefinitionError, InputError, NotFound
from plait_scheduler.deadletter import reject

log = structlog.get_logger()

MAX_DELIVERIES = 50
"""Deliveries after which a command is dead-lettered: on the last of them when deciding it fails (with the back-off
below, about 45 minutes of retries), and at the next one whatever handed it back meanwhile (replicas stopped or
killed while it was theirs, a batch that failed as a whole). The commands consumers themselves deliver without
limit (``COMMANDS_MAX_DELIVER``): a message the server gives up is neither decided nor dead-lettered, and once
acknowledged-or-given-up it is purged (``plait.adapters.acked_trim``)."""
COMMANDS_MAX_DELIVER = -1
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 60.0

PERMANENT = (InputError, NotFound, DefinitionError, msgspec.MsgspecError, RecursionError)
"""What says the command itself is wrong (or what it names: a value or type nested past what Python can walk):
deciding it again can only fail again."""


def retry_delay(deliveries: int) -> float:
    """How long a command delivered ``deliveries`` times waits before its next delivery."""
    return min(FIRST_RETRY_SECONDS * 2.0 ** max(deliveries - 1, 0), MAX_RETRY_SECONDS)


async def settle_failed(nc: NATS, js: JetStreamContext, msg: Msg, command_id: str, error: Exception) -> None:
    """Dead-letter ``msg`` when ``error`` is permanent or this was its last delivery; else hand it back for a
    later delivery. Never raises: a failure to settle leaves the message to be redelivered after the ack wait."""
    deliveries = msg.metadata.num_delivered
    reason = str(error) or type(error).__name__
    try:
        if isinstance(error, PERMANENT):
            await reject(nc, js, msg, command_id, reason)
            await msg.ack()
        elif deliveries >= MAX_DELIVERIES:
            await reject(nc, js, msg, command_id, f"failed on each of {deliveries} deliveries; last: {reason}")
            await msg.ack()
        else:
            log.warning(
                "command_retried",
                subject=msg.subject,
                command_id=command_id,
                deliveries=deliveries,
                error=reason,
                error_type=type(error).__name__,
            )
            await msg.nak(delay=retry_delay(deliveries))
    except (nats.errors.Error, OSError) as exc:
        log.warning("command_not_settled", subject=msg.subject, command_id=command_id, error=repr(exc))


async def given_up(nc: NATS, js: JetStreamContext, msg: Msg, command_id: str) -> bool:
    """Dead-letter ``msg`` and return True when it has been delivered more than ``MAX_DELIVERIES`` times without
    being settled; else False. A failure to settle it leaves it to be redelivered (True: it is not to be decided)."""
    deliveries = msg.metadata.num_delivered
    if deliveries <= MAX_DELIVERIES:
        return False
    reason = f"delivered {deliveries} times without being settled (replicas stopped or failed while deciding it)"
    try:
        await reject(nc, js, msg, command_id, reason)
        await msg.ack()
    except (nats.errors.Error, OSError) as exc:
        log.warning("command_not_settled", subject=msg.subject, command_id=command_id, error=repr(exc))
    return True


async def settle_derived(msg: Msg, error: Exception, what: str) -> None:
    """Settle a stored message whose derived work (an activation's fire, a notification) failed: a permanent cause
    (what it names is not registered) is logged and the message acked, since taking it again cannot help; anything
    else hands it back for a later delivery. Never raises."""
    try:
        if isinstance(error, PERMANENT):
            log.warning(f"{what}_refused", subject=msg.subject, error=str(error))
            await msg.ack()
        else:
            log.error(f"{what}_failed", subject=msg.subject, error=repr(error), exc_info=error)
            await msg.nak(delay=1.0)
    except nats.errors.Error as exc:  # it is delivered again after the ack wait
        log.warning(f"{what}_not_settled", subject=msg.subject, error=repr(exc))
