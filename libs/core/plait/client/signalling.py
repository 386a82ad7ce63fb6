"""Signals: giving a waiting gate its value, or approving (rejecting) an approval, and learning how it was decided."""

from __future__ import annotations

import math
import uuid
from typing import Any

import anyio
import msgspec
from nats.aio.msg import Msg

from plait import codec
from plait.adapters.commands import publish_command
from plait.adapters.nats_errors import as_plait_errors
from plait.client.connection import ClientBase
from plait.client.launch_decision import rejection_reason, unsubscribe_all
from plait.core.commands import SendSignal
from plait.core.events import CommandRejected
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
            rejected = [e for e in decision.events if isinstance(e, CommandRejected)]
            mine = next((e.reason for e in rejected if e.command_id == command.command_id), None)
            outcomes.send_nowait(mine)

        inbox = self.nc.new_inbox()
        subject = self._subject(execution_id)
        with as_plait_errors(f"signalling execution {execution_id}", execution_id=execution_id):
            subscriptions = [await self.nc.subscribe(inbox, cb=refused), await self.nc.subscribe(subject, cb=decided)]
            try:
                await publish_command(self.js, command, self.project, self.domain, reply_to=inbox)
                with anyio.fail_after(timeout):
                    reason = await outcome.receive()
            except TimeoutError:
                raise Timeout(
                    f"no scheduler decided on signal '{name}' of execution {execution_id} within {timeout:g} s",
                    execution_id=execution_id,
                ) from None
            finally:
                await unsubscribe_all(subscriptions)
        if reason is not None:
            raise InputError(reason)
