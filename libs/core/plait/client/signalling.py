"""Signals: giving a waiting gate its value, or approving (rejecting) an approval, and learning how it was decided."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from anyio.abc import ObjectReceiveStream
from nats.aio.msg import Msg

from plait import codec
from plait.adapters.commands import publish_command
from plait.adapters.connection import reconnections
from plait.adapters.nats_errors import as_plait_errors
from plait.client.connection import ClientBase
from plait.client.launch_decision import rejection_reason, unsubscribe_all, until_answered
from plait.core.commands import SendSignal
from plait.core.events import CommandRejected, Decision
from plait.errors import InputError, Timeout
from plait.sdk.hints import encode_value

SignalOutcome = str | None  # None once the signal was recorded; else why the scheduler rejected it


class Signalling(ClientBase):
    async def signal(
        self, execution_id: str, name: str, value: Any = None, *, reject: bool = False, timeout: float = 30.0
    ) -> None:
        """Give signal ``name`` of execution ``execution_id`` its ``value`` (a ``wait_for_input`` gate), or approve
        an ``approve`` gate (``reject=True`` rejects it); returns once a scheduler recorded it. Raises
        ``InputError`` with the scheduler's reason when it was refused (an unknown name, a value not of the
        expected type, a signal given twice), ``Timeout`` when no scheduler decided within ``timeout`` seconds."""
        try:
            encoded = encode_value(value)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InputError(f"the value of signal '{name}' cannot be encoded: {exc}") from None
        command = SendSignal(
            command_id=f"{execution_id}/signal-{name}/{uuid.uuid4().hex[:12]}",
            execution_id=execution_id,
            name=name,
            value=encoded,
            reject=reject,
        )
        outcomes, outcome = anyio.create_memory_object_stream[SignalOutcome](math.inf)

        async def refused(msg: Msg) -> None:
            outcomes.send_nowait(rejection_reason(msg.data))

        async def decided(msg: Msg) -> None:
            try:
                decision = codec.decision_decoder.decode(msg.data)
            except msgspec.DecodeError:
                return
            if command.command_id not in decision.commands:
                return
            outcomes.send_nowait(_rejection_of(decision, command))

        inbox = self.nc.new_inbox()
        subject = self._subject(execution_id)
        with as_plait_errors(f"signalling execution {execution_id}", execution_id=execution_id):
            subscriptions = [await self.nc.subscribe(inbox, cb=refused), await self.nc.subscribe(subject, cb=decided)]
            try:
                with reconnections(self.nc) as reconnected:
                    await publish_command(self.js, command, self.project, self.domain, reply_to=inbox)
                    with anyio.fail_after(timeout):
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(
                                self._look_for_signal_when_reconnected, command, reconnected, outcomes.send_nowait
                            )
                            reason = await outcome.receive()
                            tg.cancel_scope.cancel()
            except TimeoutError:
                raise Timeout(
                    f"no scheduler decided on signal '{name}' of execution {execution_id} within {timeout:g} s",
                    execution_id=execution_id,
                ) from None
            finally:
                await unsubscribe_all(subscriptions)
                outcomes.close()
                outcome.close()
        if reason is not None:
            raise InputError(reason)

    async def _look_for_signal_when_reconnected(
        self,
        command: SendSignal,
        reconnected: ObjectReceiveStream[None],
        decided: Callable[[SignalOutcome], None],
    ) -> None:
        """Each time the connection is made anew, look for the decision of the signal in the execution's log: one
        appended while this client was away was sent to no subscription of its."""
        subject = self._subject(command.execution_id)
        async for _ in reconnected:
            found = await until_answered(
                self.nc, "signal_check_retried", command.execution_id, lambda: self._decided(subject, command)
            )
            if found is not None:
                decided(found[0])

    async def _decided(self, subject: str, command: SendSignal) -> tuple[SignalOutcome] | None:
        """How the log decided ``command`` (the reason it was rejected, or None), or None when it has not yet."""
        async for raw in self._store.raw(subject, at_least=await self._store.last_sequence(subject)):
            decision = codec.decision_decoder.decode(raw.data or b"")
            if command.command_id in decision.commands:
                return (_rejection_of(decision, command),)
        return None


def _rejection_of(decision: Decision, command: SendSignal) -> str | None:
    """Why ``decision`` rejected ``command``; None when it recorded it."""
    rejected = [e for e in decision.events if isinstance(e, CommandRejected)]
    return next((e.reason for e in rejected if e.command_id == command.command_id), None)
