"""Direct gets of stored messages: a subject's newest message, the newest of many subjects, and a subject's
messages after a sequence, in batches (ADR-31, nats-server >= 2.11) or one at a time."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Sequence
from types import TracebackType
from typing import Any, Self

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from plait.adapters.connection import route_of
from plait.adapters.scoped_reads import last_subject_message
from plait.errors import TransportError
from plait.protocol import subjects
from plait.protocol.headers import (
    DESCRIPTION,
    NATS_LAST_SEQUENCE,
    NATS_NUM_PENDING,
    NATS_SEQUENCE,
    NATS_STREAM,
    NATS_SUBJECT,
    STATUS,
)

BATCH_MESSAGES = 1024  # messages asked for in one batched direct get
BATCH_BYTES = 16 * 1024 * 1024  # and their size: the server stops a batch after the message that reaches it
MULTI_LAST_SUBJECTS = 256  # subjects asked for in one multi-last direct get
STATUS_END_OF_BATCH = "204"
STATUS_NOT_FOUND = "404"


class BatchUnsupported(Exception):
    """The server answered a batched direct get as a single one (nats-server < 2.11), or refused it."""


class DirectGetBatches:
    """Batched direct gets of one stream, answered to one inbox that lives as long as the ``async with`` block."""

    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self._route = route_of(js)
        self._request_subject = f"{self._route.api_prefix}.DIRECT.GET.{stream}"
        self._inbox = ""
        self._subscription: Subscription | None = None
        self.pending = 0
        """What the server had left for the last batch's request when it ended it (``Nats-Num-Pending``)."""

    async def __aenter__(self) -> Self:
        self._inbox = self._route.nc.new_inbox()
        self._subscription = await self._route.nc.subscribe(self._inbox)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()

    async def batch(self, request: dict[str, Any]) -> AsyncGenerator[RawStreamMsg, None]:
        """The messages the server answers ``request`` with, in order, until its end-of-batch status.

        Raises ``BatchUnsupported`` before yielding anything when the server does not batch. Every message
        names the sequence of the one before it in its batch (``Nats-Last-Sequence``), so a message lost on
        the way (a slow consumer) is an error rather than a silent gap.
        """
        assert self._subscription is not None, "used outside its async with block"  # noqa: S101  an invariant of this code, not a check of input
        self.pending = 0
        await self._route.nc.publish(self._request_subject, json.dumps(request).encode(), reply=self._inbox)
        previous = 0
        while True:
            msg = await self._next(first=previous == 0)
            headers = msg.headers or {}
            status = headers.get(STATUS)
            if status == STATUS_END_OF_BATCH:
                self.pending = int(headers.get(NATS_NUM_PENDING, "0"))
                return
            if status == STATUS_NOT_FOUND and previous == 0:
                return
            if status is not None:
                if previous == 0:
                    raise BatchUnsupported(f"status {status} {headers.get('Description', '')}".strip())
                raise nats.js.errors.APIError(code=int(status), description=headers.get(DESCRIPTION))
            if NATS_NUM_PENDING not in headers:
                raise BatchUnsupported("the server answered with a single message")
            if int(headers.get(NATS_LAST_SEQUENCE, "0")) != previous:
                raise TransportError(
                    f"batched direct get {request}: message after sequence {previous} missing "
                    f"(got one after {headers.get('Nats-Last-Sequence')})"
                )
            raw = _raw_message(msg)
            previous = raw.seq or previous
            yield raw

    async def _next(self, *, first: bool) -> Msg:
        assert self._subscription is not None  # noqa: S101  an invariant of this code, not a check of input
        try:
            return await self._subscription.next_msg(timeout=self._route.timeout)
        except nats.errors.TimeoutError as exc:
            if first:
                raise BatchUnsupported(f"no answer to a batched direct get within {self._route.timeout}s") from exc
            raise


def _raw_message(msg: Msg) -> RawStreamMsg:
    headers = msg.headers or {}
    return RawStreamMsg(
        subject=headers.get(NATS_SUBJECT),
        seq=int(headers[NATS_SEQUENCE]),
        data=msg.data,
        headers=headers,
        stream=headers.get(NATS_STREAM),
    )


async def batched_messages(
    js: JetStreamContext, stream: str, subject: str, after: int
) -> AsyncGenerator[RawStreamMsg, None]:
    """The messages of ``stream`` on ``subject`` after sequence ``after``, in order, in batched direct gets of up
    to ``BATCH_MESSAGES`` messages (and ``BATCH_BYTES``) until the subject has nothing more. Raises
    ``BatchUnsupported`` before yielding anything when the server does not batch."""
    async with DirectGetBatches(js, stream) as batches:
        while True:
            request = {"seq": after + 1, "next_by_subj": subject, "batch": BATCH_MESSAGES, "max_bytes": BATCH_BYTES}
            async with contextlib.aclosing(batches.batch(request)) as messages:
                async for raw in messages:
                    after = raw.seq or after
                    yield raw
            if batches.pending == 0:
                return


async def messages_one_by_one(
    js: JetStreamContext, stream: str, subject: str, after: int, *, direct: bool = True
) -> AsyncGenerator[RawStreamMsg, None]:
    """The messages of ``stream`` on ``subject`` after sequence ``after``, in order, one get each (a direct get,
    or with ``direct=False`` one answered by the stream leader)."""
    sequence = after + 1
    while True:
        try:
            raw = await js.get_msg(stream, seq=sequence, subject=subject, next=True, direct=direct)
        except nats.js.errors.NotFoundError:
            return
        assert raw.seq is not None and raw.data is not None  # noqa: S101  an invariant of this code, not a check of input
        yield raw
        sequence = raw.seq + 1


async def last_messages(js: JetStreamContext, stream: str, subject_list: Sequence[str]) -> dict[str, RawStreamMsg]:
    """The newest message of each subject that has one, by subject: one batched direct get (ADR-31 ``multi_last``)
    per ``MULTI_LAST_SUBJECTS`` subjects. Raises ``BatchUnsupported`` when the server cannot do that."""
    found: dict[str, RawStreamMsg] = {}
    async with DirectGetBatches(js, stream) as batches:
        for start in range(0, len(subject_list), MULTI_LAST_SUBJECTS):
            chunk = list(subject_list[start : start + MULTI_LAST_SUBJECTS])
            async with contextlib.aclosing(batches.batch({"multi_last": chunk, "batch": len(chunk)})) as messages:
                async for raw in messages:
                    if raw.subject is not None:
                        found[raw.subject] = raw
    return found


async def last_message(js: JetStreamContext, subject: str) -> RawStreamMsg | None:
    """The newest message on ``subject`` of the events stream, or None when it has none.

    A direct get may be answered by any replica of the stream, or a mirror, that lags behind the leader: one
    that finds nothing is asked again of the stream leader before the subject counts as empty (both through APIs
    that name the subject, which a confined client may use: see ``scoped_reads``).
    """
    try:
        return await js.get_msg(subjects.EVENTS_STREAM, subject=subject, direct=True)
    except nats.js.errors.NotFoundError:
        return await last_subject_message(js, subjects.EVENTS_STREAM, subject)
