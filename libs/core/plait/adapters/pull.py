"""Pulling a durable consumer's messages as they arrive, never asking for more than the free slots can take.

Not ``PullSubscription.fetch(n)``: once one message of a batch has arrived, it waits for the other n - 1
until the request expires, so a lone dispatch would wait seconds before it starts. Here each message is
handed over the moment it arrives, and one pull request asks for as many messages as there are free slots.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import nats.errors
import nats.js.errors
import structlog
from anyio.abc import ObjectReceiveStream
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo
from structlog.typing import FilteringBoundLogger

from plait.adapters.connection import on_reconnection
from plait.protocol.headers import DESCRIPTION, NATS_PIN_ID, STATUS

log: FilteringBoundLogger = structlog.get_logger("plait.pull")

PULL_WAIT_SECONDS = 5.0
"""How long one pull request waits on the server for messages before it expires and is made anew."""
_PULL_LOST_AFTER_SECONDS = 2.0  # past its expiry with no word from the server: the request was lost
_BACKOFF_SECONDS = 1.0
_ENDED_QUIETLY = ("404", "408")  # no messages; the request expired
_PIN_LOST = "423"  # another replica is pinned (or none is, and this request carried a pin it no longer has)


class Pin(Protocol):
    """This replica's pin on a consumer whose priority group delivers to one pinned client at a time: its pull
    requests carry the group, and the pin once the server gave it one (with the first message it delivered)."""

    group: str
    id: str

    async def stand_by(self) -> None:
        """Until this replica may ask for the consumer's messages while not pinned."""

    def pinned(self, pin_id: str) -> None:
        """The server pinned this replica (``pin_id``)."""

    def unpinned(self) -> None:
        """The server pinned another replica, or none: this one's pin is gone."""


class Slots(Protocol):
    """What the puller takes a message's slot from (an ``anyio.Semaphore``, or a count of its own)."""

    @property
    def value(self) -> int: ...

    async def acquire(self) -> None: ...

    def acquire_nowait(self) -> None: ...

    def release(self) -> None: ...


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> ConsumerInfo:
    """The durable consumer ``config`` names, created as configured when it does not exist yet."""
    assert config.durable_name is not None  # noqa: S101  an invariant of this code, not a check of input
    try:
        info: ConsumerInfo = await js.consumer_info(stream, config.durable_name)
    except nats.js.errors.NotFoundError:
        info = await js.add_consumer(stream, config)
    return info


class Puller:
    """Hands over a durable pull consumer's messages as they arrive, each holding one of ``slots``.

    ``start(msg)`` is called for each message with one slot already taken from ``slots``; whoever
    finishes with the message releases it. A message that arrives when no slot is free (a late reply to a
    request given up as lost) is handed back to the server at once, for any replica to take.
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        consumer: str,
        slots: Slots,
        wait_seconds: float = PULL_WAIT_SECONDS,
        pin: Pin | None = None,
    ) -> None:
        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._slots = slots
        self._wait_seconds = wait_seconds
        self._pin = pin
        self.asking = False  # a pull request of this puller is on the server, waiting for messages

    async def run(self, start: Callable[[Msg], None]) -> None:
        """Pull until cancelled. A message is handed over by the subscription's callback as it arrives (no turn of
        the event loop through another task); the pull loop hears only when its request has ended. A message whose
        ``start`` raises goes back to the server, its slot freed."""
        inbox = self._nc.new_inbox()
        ending, endings = anyio.create_memory_object_stream[Msg | None](math.inf)
        request = _Request()

        async def receive(msg: Msg) -> None:
            if request.closed:
                await _hand_back(msg)
            elif _status(msg) is not None:
                ending.send_nowait(msg)
            else:
                request.delivered += 1
                if request.delivered == request.batch:
                    ending.send_nowait(None)
                self._note_pin(msg)
                await self._hand_over(msg, start)

        def forgotten() -> None:  # a server that restarted forgot the request: ask again now, not once it is lost
            if self.asking:
                ending.send_nowait(None)

        subscription = await self._nc.subscribe(inbox, cb=receive)
        stop_listening = on_reconnection(self._nc, forgotten)
        try:
            while True:
                await self._slots.acquire()  # wait for a free slot, then ask for as many as are free
                self._slots.release()
                if self._pin is not None and not self._pin.id:
                    await self._pin.stand_by()
                if not await self._pull(inbox, self._slots.value, request, endings):
                    await anyio.sleep(_BACKOFF_SECONDS)
        finally:
            request.closed = True
            stop_listening()
            with anyio.CancelScope(shield=True):
                await _unsubscribe(subscription)
                ending.close()
                endings.close()

    async def _pull(self, inbox: str, batch: int, request: _Request, endings: ObjectReceiveStream[Msg | None]) -> bool:
        """One pull request for ``batch`` messages; False when the server refused it (time to back off)."""
        body: dict[str, Any] = {"batch": batch, "expires": int(self._wait_seconds * 1e9)}
        if self._pin is not None:
            body["group"] = self._pin.group
            if self._pin.id:
                body["id"] = self._pin.id
        request.batch, request.delivered = batch, 0
        try:
            await self._nc.publish(self._next_subject, json.dumps(body).encode(), reply=inbox)
        except nats.errors.Error as exc:
            log.warning("pull_request_failed", error=repr(exc))
            return False
        self.asking = True
        try:
            with anyio.move_on_after(self._wait_seconds + _PULL_LOST_AFTER_SECONDS):
                return await self._ended(request, endings)
            return True
        finally:
            self.asking = False

    async def _ended(self, request: _Request, endings: ObjectReceiveStream[Msg | None]) -> bool:
        """Once the request in flight has ended: False when the server refused it (time to back off)."""
        while True:
            ended = await endings.receive()
            if ended is None:  # every message asked for was delivered, or the connection was made anew
                return True
            status = _status(ended)
            if status in _ENDED_QUIETLY:
                return True
            if status == _PIN_LOST and self._pin is not None:
                self._pin.unpinned()
                return True
            description = ended.headers.get(DESCRIPTION, "") if ended.headers else ""
            log.warning("pull_request_ended", status=status, description=description)
            return request.delivered > 0

    def _note_pin(self, msg: Msg) -> None:
        pin_id = msg.headers.get(NATS_PIN_ID) if msg.headers else None
        if self._pin is not None and pin_id and pin_id != self._pin.id:
            self._pin.pinned(pin_id)

    async def _hand_over(self, msg: Msg, start: Callable[[Msg], None]) -> None:
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            await _hand_back(msg)
            return
        try:
            start(msg)
        except Exception:  # in the client's callback task, where nobody would see it: logged, handed back
            self._slots.release()
            log.exception("hand_over_failed", subject=msg.subject)
            await _hand_back(msg)


@dataclass
class _Request:
    """The pull request in flight: how many messages it asked for and how many came; ``closed`` once the puller
    stopped (a message still arriving goes back to the server)."""

    batch: int = 0
    delivered: int = 0
    closed: bool = False


def _status(msg: Msg) -> str | None:
    """The status code of a server's reply to a pull request; None for a message of the stream."""
    if msg.headers and not msg.reply:
        return msg.headers.get(STATUS)
    return None


async def _hand_back(msg: Msg) -> None:
    """Return a stream message to the server for immediate redelivery (status replies need nothing)."""
    if _status(msg) is not None:
        return
    try:
        await msg.nak()
    except nats.errors.Error as exc:
        log.warning("nak_failed", error=repr(exc))


async def _unsubscribe(subscription: Subscription) -> None:
    try:
        await subscription.unsubscribe()
    except nats.errors.Error as exc:
        log.warning("unsubscribe_failed", error=repr(exc))
