"""Storing a launch command and waiting until a scheduler has decided it: launched, or refused and why."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import anyio
import msgspec
import nats.errors
import nats.js.errors
import structlog
from anyio.abc import ObjectReceiveStream
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from plait import codec
from plait.adapters.commands import publish_command, subject_of
from plait.adapters.connection import reconnections
from plait.adapters.nats_errors import UNAVAILABLE, as_plait_errors
from plait.adapters.scoped_reads import last_subject_message
from plait.client.connection import ClientBase
from plait.core.commands import LaunchExecution
from plait.errors import PlaitError, Timeout
from plait.protocol import subjects
from plait.protocol.headers import PLAIT_ERROR
from plait.protocol.rejections import Rejection

T = TypeVar("T")

FIRST_PUBLISH_RETRY_SECONDS = 0.05
LONGEST_PUBLISH_RETRY_SECONDS = 2.0
LAST_LOOK_SECONDS = 2.0

log = structlog.get_logger()

LaunchOutcome = str | PlaitError | None
"""How a launch was decided: None once launched, the scheduler's reason when refused, or the error that stopped it."""


_rejection_decoder = msgspec.json.Decoder(Rejection)


def rejection_reason(data: bytes) -> str:
    """The reason a scheduler gave for refusing a command (see ``Plait-Reply-To``)."""
    try:
        return _rejection_decoder.decode(data).reason
    except msgspec.DecodeError:
        return data.decode(errors="replace")


async def unsubscribe_all(subscriptions: list[Subscription]) -> None:
    """End ``subscriptions``, even while cancelled; one already gone is no error."""
    with anyio.CancelScope(shield=True):
        for subscription in subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()


async def until_answered(nc: NATS, retried: str, execution_id: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, made again with back-off while it times out or finds no responder (a stream leader being
    elected, say), until the caller's own deadline cancels it; logged as ``retried``."""
    delay = FIRST_PUBLISH_RETRY_SECONDS
    while True:
        try:
            return await call()
        except (nats.errors.TimeoutError, *UNAVAILABLE) as exc:
            if nc.is_closed:
                raise
            log.warning(retried, execution=execution_id, error=str(exc) or type(exc).__name__)
        await anyio.sleep(delay)
        delay = min(delay * 2, LONGEST_PUBLISH_RETRY_SECONDS)


@contextlib.contextmanager
def _one_error() -> Iterator[None]:
    """A task group's lone error as itself, not wrapped in an exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class LaunchDecision(ClientBase):
    async def _launch_decided(self, command: LaunchExecution, timeout: float, *, fresh_id: bool) -> str | None:
        """Store the launch and wait until it has been decided: None once the execution exists, or the reason the
        scheduler refused it. ``fresh_id``: the execution id was made for this call, so no execution can have it
        before the command stored first by this call is decided.

        The decision may come before the command's own acknowledgement (lost, or late): it ends the wait as well.
        """
        execution_id = command.execution_id
        outcomes, outcome = anyio.create_memory_object_stream[LaunchOutcome](math.inf)

        async def refused(msg: Msg) -> None:
            outcomes.send_nowait(rejection_reason(msg.data))

        async def launched(msg: Msg) -> None:
            outcomes.send_nowait(None)

        async def dead_lettered(msg: Msg) -> None:  # refused, when the reply went to an earlier try's inbox
            outcomes.send_nowait((msg.headers or {}).get(PLAIT_ERROR, "the scheduler refused the launch"))

        inbox = self.nc.new_inbox()
        subscriptions = [
            await self.nc.subscribe(inbox, cb=refused, max_msgs=1),
            await self.nc.subscribe(self._subject(execution_id), cb=launched, max_msgs=1),
            await self.nc.subscribe(self._dead_letter_subject(command), cb=dead_lettered, max_msgs=1),
        ]
        try:
            with reconnections(self.nc) as reconnected, anyio.fail_after(timeout), _one_error():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._store_launch, command, inbox, outcomes.send_nowait, fresh_id)
                    tg.start_soon(self._look_for_launch_when_reconnected, command, reconnected, outcomes.send_nowait)
                    decided = await outcome.receive()
                    tg.cancel_scope.cancel()
        except TimeoutError:
            if await self._launched_after_all(execution_id):
                return None
            raise Timeout(
                f"no scheduler decided on execution {execution_id} within {timeout:g} s; launching it again with "
                f"execution_id={execution_id!r} starts it at most once",
                execution_id=execution_id,
            ) from None
        finally:
            await unsubscribe_all(subscriptions)
            outcomes.close()
            outcome.close()
        if isinstance(decided, PlaitError):
            raise decided
        return decided

    async def _launched_after_all(self, execution_id: str) -> bool:
        """One last look in the log before a launch is said to have timed out: its decision may have been appended
        without reaching this client's subscription (a message dropped on the way, with no reconnection to say so)."""
        with anyio.move_on_after(LAST_LOOK_SECONDS), contextlib.suppress(nats.errors.Error, PlaitError):
            return await self._exists(execution_id)
        return False

    async def _store_launch(
        self, command: LaunchExecution, reply_to: str, decided: Callable[[LaunchOutcome], None], fresh_id: bool
    ) -> None:
        """Publish the command until JetStream acknowledges it, then report an execution launched before (this
        launch then starts nothing new), or the refusal of the same command stored before. Each try has the same
        ``Nats-Msg-Id``, so a try that was stored but whose acknowledgement was lost makes the next one a duplicate,
        stored once. An error that no retry can mend is reported as the outcome.

        A ``fresh_id`` stored by its first acknowledged try has no earlier outcome to look for (one read of the log
        fewer per launch): the subscriptions made before it was stored are sent its decision."""
        execution_id = command.execution_id
        try:
            with as_plait_errors(f"launching execution {execution_id}", execution_id=execution_id):
                ack = await until_answered(
                    self.nc,
                    "launch_publish_retried",
                    execution_id,
                    lambda: publish_command(self.js, command, self.project, self.domain, reply_to=reply_to),
                )
                if fresh_id and not ack.duplicate:
                    return
                await until_answered(
                    self.nc,
                    "launch_check_retried",
                    execution_id,
                    lambda: self._report_earlier_outcome(command, bool(ack.duplicate), decided),
                )
        except PlaitError as exc:
            decided(exc)

    async def _look_for_launch_when_reconnected(
        self,
        command: LaunchExecution,
        reconnected: ObjectReceiveStream[None],
        decided: Callable[[LaunchOutcome], None],
    ) -> None:
        """Each time the connection is made anew, look for the launch's outcome in the log and the dead letters: a
        decision appended while this client was away was sent to no subscription of its."""
        async for _ in reconnected:
            await until_answered(
                self.nc,
                "launch_check_retried",
                command.execution_id,
                lambda: self._report_earlier_outcome(command, True, decided),
            )

    async def _report_earlier_outcome(
        self, command: LaunchExecution, duplicate: bool, decided: Callable[[LaunchOutcome], None]
    ) -> None:
        """Report an execution launched before, or the refusal of the same command stored before."""
        if await self._exists(command.execution_id):
            decided(None)
        elif duplicate and (refusal := await self._refusal_of(command)) is not None:
            decided(refusal)

    def _dead_letter_subject(self, command: LaunchExecution) -> str:
        return subjects.dead_letter_subject(subject_of(command, self.project, self.domain))

    async def _refusal_of(self, command: LaunchExecution) -> str | None:
        """Why the scheduler refused this very command (stored by an earlier try), or None if it has not."""
        letter = await last_subject_message(self.js, subjects.DEAD_LETTER_STREAM, self._dead_letter_subject(command))
        if letter is None or letter.data != codec.encode(command):
            return None
        reason: str = (letter.headers or {}).get(PLAIT_ERROR, "the scheduler refused the launch")
        return reason
