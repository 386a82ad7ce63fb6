"""Reads of one subject through JetStream APIs whose own subject names it, so that NATS permissions can confine
them to a project and domain (docs/security.md).

A batched direct get, a stream message get and a consumer created without a name carry the subject they read in
their body, where no permission can see it; these use instead a consumer created on
``$JS.API.CONSUMER.CREATE.<stream>.<name>.<subject>`` (the server refuses a body whose filter differs from the
API subject's), pushing to an inbox of the caller's, and served by the stream leader. The consumer acks nothing and
is removed by the server once idle (``IDLE_CONSUMER_SECONDS``): its deletion, which names no subject, is an
operator's right only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header, RawStreamMsg

from plait.adapters.connection import authenticated, reconnection_count, route_of

IDLE_CONSUMER_SECONDS = 10.0
FLOW_CONTROL_HEARTBEAT_SECONDS = 2.0
FLOW_CONTROL_PREFIX = "$JS.FC."
MESSAGE_WAIT_SECONDS = 10.0  # a pending message the leader has not pushed within this long: a transport error


async def subject_messages(
    js: JetStreamContext,
    stream: str,
    subject: str,
    after: int = 0,
    *,
    follow: bool = False,
    last: bool = False,
    flow_control: bool = False,
) -> AsyncGenerator[RawStreamMsg, None]:
    """The messages of ``stream`` on ``subject`` after sequence ``after`` (with ``last``: its newest one only), in
    order, until none is left; with ``follow``, then each one appended, until the caller stops. With
    ``flow_control``, the leader pushes no further than the caller has taken (for large messages, such as an
    object's chunks: the subscription's buffer stays bounded however slowly the caller reads)."""
    route = route_of(js)
    inbox = route.nc.new_inbox()
    subscription = await route.nc.subscribe(inbox)
    if last:
        policy, start = DeliverPolicy.LAST_PER_SUBJECT, None
    elif after:
        policy, start = DeliverPolicy.BY_START_SEQUENCE, after + 1
    else:
        policy, start = DeliverPolicy.ALL, None
    config = ConsumerConfig(
        name=route.nc._nuid.next().decode(),
        filter_subject=subject,
        deliver_subject=inbox,
        deliver_policy=policy,
        opt_start_seq=start,
        ack_policy=AckPolicy.NONE,
        flow_control=flow_control or None,
        idle_heartbeat=FLOW_CONTROL_HEARTBEAT_SECONDS if flow_control else None,  # the server wants both
        inactive_threshold=IDLE_CONSUMER_SECONDS,
        mem_storage=True,
        num_replicas=1,
    )
    try:
        info = await js.add_consumer(stream, config=config)
        pending = info.num_pending or 0
        due = time.monotonic() + MESSAGE_WAIT_SECONDS  # the next message, however many heartbeats come first
        while follow or pending:
            timeout = None if follow else due - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise nats.errors.TimeoutError
            msg = await subscription.next_msg(timeout=timeout)
            if not msg.reply or msg.reply.startswith(FLOW_CONTROL_PREFIX):  # a heartbeat, or a flow control request
                go_on = msg.reply or (msg.headers or {}).get(Header.CONSUMER_STALLED)
                if flow_control and go_on:
                    await route.nc.publish(go_on)  # the leader waits for this answer before it pushes more
                continue
            due = time.monotonic() + MESSAGE_WAIT_SECONDS
            metadata = msg.metadata
            pending = metadata.num_pending
            yield RawStreamMsg(
                subject=msg.subject, seq=metadata.sequence.stream, data=msg.data, headers=msg.headers, stream=stream
            )
    finally:
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()


async def last_subject_message(js: JetStreamContext, stream: str, subject: str) -> RawStreamMsg | None:
    """The newest message of ``stream`` on ``subject``, as the stream leader has it; None when it has none. A
    connection made without credentials (confined by nothing) asks the leader directly (``STREAM.MSG.GET``, which
    names the subject only in its body); one made with credentials, through a consumer whose create request names
    it."""
    if not authenticated(js):
        try:
            return await js.get_msg(stream, subject=subject)
        except nats.js.errors.NotFoundError:
            return None
    async with contextlib.aclosing(subject_messages(js, stream, subject, last=True)) as messages:
        async for raw in messages:
            return raw
    return None


FOLLOW_HEARTBEAT_SECONDS = 2.0
FOLLOWER_IDLE_SECONDS = 10.0  # a push consumer with no subscriber left (its follower stopped or vanished) goes then
RECONNECTION_LOOK_SECONDS = 0.5  # how often a silent follower looks whether its connection was made anew


async def follow_subject(js: JetStreamContext, stream: str, subject: str) -> AsyncGenerator[RawStreamMsg, None]:
    """Every message of ``stream`` on ``subject`` from the first, then each one appended, until the caller stops: what
    an ordered consumer gives, through a named consumer whose create request names ``subject`` (so permissions can
    confine it). A gap in the consumer's sequence, heartbeats that stop, or a connection made anew (a server that
    restarted lost the consumer) make a new consumer from the message after the last one given: nothing is skipped or
    given twice."""
    route = route_of(js)
    last = 0
    while True:
        inbox = route.nc.new_inbox()
        subscription = await route.nc.subscribe(inbox)
        config = ConsumerConfig(
            name=route.nc._nuid.next().decode(),
            filter_subject=subject,
            deliver_subject=inbox,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if last else DeliverPolicy.ALL,
            opt_start_seq=last + 1 if last else None,
            ack_policy=AckPolicy.NONE,
            idle_heartbeat=FOLLOW_HEARTBEAT_SECONDS,
            inactive_threshold=FOLLOWER_IDLE_SECONDS,
            mem_storage=True,
            num_replicas=1,
        )
        try:
            reconnections = reconnection_count(route.nc)
            await js.add_consumer(stream, config=config)
            delivered, heard = 0, time.monotonic()
            while True:
                try:
                    msg = await subscription.next_msg(timeout=RECONNECTION_LOOK_SECONDS)
                except nats.errors.TimeoutError:
                    if reconnection_count(route.nc) != reconnections:
                        break  # its server may have restarted, and lost it: a new consumer
                    if time.monotonic() - heard >= 3 * FOLLOW_HEARTBEAT_SECONDS:
                        break  # its heartbeats stopped (the consumer or its server went away): a new consumer
                    continue
                heard = time.monotonic()
                if not msg.reply:  # a heartbeat
                    continue
                metadata = msg.metadata
                if metadata.sequence.consumer != delivered + 1:
                    break  # a message was lost on the way (a slow subscriber): a new consumer, from the last one
                delivered = metadata.sequence.consumer
                last = metadata.sequence.stream
                yield RawStreamMsg(subject=msg.subject, seq=last, data=msg.data, headers=msg.headers, stream=stream)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
