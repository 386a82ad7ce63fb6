"""Attempts of a dispatch message that wait for a worker are handed on to another executor replica.

A chunk is taken whole by one replica, and a replica takes up to its prefetch of messages at once: it may be busy,
and their attempts would then wait for its workers while another replica idles (a decision's few long tasks on
one-GPU executors, or long executions launched together, say). An attempt that has waited ``HAND_ON_SECONDS`` for a
worker, while some replica has a pull request waiting on the consumer, is handed on: its message is published again,
its bytes and signature unchanged, with a ``Plait-Attempts`` header naming the attempts the copy is for (a copy may
be handed on again); this replica then settles them as done, and acks its message once the others are settled.
The header is not signed: a forged copy can only narrow which attempts of a signed chunk it runs, and the chunk it
was cut from stays held until each of its attempts is settled.
"""

from __future__ import annotations

import xxhash
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait.adapters.deadletters import without_server_headers
from plait.core.dispatch import Dispatch
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID, PLAIT_ATTEMPTS, PLAIT_LOST_DELIVERIES

_HANDED_ON = "/on/"
HAND_ON_SECONDS = 1.0
"""How long an attempt of a chunk waits for a worker before it is handed on (when another replica asks for work)."""
PULL_WAIT_SECONDS = 1.0
"""How long an executor's pull request waits on the server: a replica that stopped asking (every worker busy on a
long attempt) may hand on once its own request has ended, which could otherwise be the first given the copy."""


def listed(dispatches: list[Dispatch], msg: Msg) -> list[Dispatch]:
    """The attempts of a message that a handed-on copy names (all of them, for a message that is no copy); a copy
    that names an attempt its chunk does not carry, or none, raises ``ValueError``."""
    names = (msg.headers or {}).get(PLAIT_ATTEMPTS)
    if names is None:
        return dispatches
    wanted = set(names.split(","))
    kept = [dispatch for dispatch in dispatches if dispatch.attempt_id in wanted]
    if not kept or len(kept) != len(wanted):
        raise ValueError(f"a handed-on dispatch names attempts its chunk does not carry: {names[:200]}")
    return kept


def deliveries(msg: Msg) -> int:
    """The message's deliveries toward the executors' delivery limit: this one, those before it whose executor was
    lost, and, for a handed-on copy, those of the messages it was cut from (a copy starts its own count at one)."""
    lost_before = (msg.headers or {}).get(PLAIT_LOST_DELIVERIES, "")
    return msg.metadata.num_delivered + (int(lost_before) if lost_before.isdigit() else 0)


async def someone_asks(js: JetStreamContext, consumer: str) -> bool:
    """Whether a pull request waits for dispatches on ``consumer`` (asked when this replica has none waiting)."""
    info = await js.consumer_info(subjects.DISPATCH_STREAM, consumer)
    return (info.num_waiting or 0) > 0


async def publish_copy(js: JetStreamContext, msg: Msg, dispatches: list[Dispatch]) -> None:
    """Publish the message again for ``dispatches`` (some of its attempts) and wait until it is stored."""
    names = ",".join(dispatch.attempt_id for dispatch in dispatches)
    headers = without_server_headers(msg.headers)
    # Unique per message handed on (a copy may be handed on again), the same for each try of one hand-on.
    chunk = (msg.headers or {}).get(NATS_MSG_ID, "").split(_HANDED_ON, 1)[0]
    sequence = msg.metadata.sequence.stream
    headers[PLAIT_ATTEMPTS] = names
    headers[PLAIT_LOST_DELIVERIES] = str(deliveries(msg) - 1)  # handing on is no lost delivery
    headers[NATS_MSG_ID] = f"{chunk}{_HANDED_ON}{sequence}/{xxhash.xxh64_hexdigest(names.encode())}"
    await js.publish(msg.subject, msg.data, headers=headers, stream=subjects.DISPATCH_STREAM)
