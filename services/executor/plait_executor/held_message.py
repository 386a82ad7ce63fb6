"""A dispatch message held while its attempts run: acknowledged once every one of them is settled.

An attempt is settled when its result is stored (or none is needed: its execution ended), or when it is handed back
(the executor stopped before a worker took it, or it was cut short). When all are settled the message is acked if
none was handed back, handed back at once if none was done, and handed back after ``PARTIAL_REDELIVERY_DELAY``
if some were done: the executor it goes to next skips the attempts the execution's log shows ended (see
``AttemptRunner``), and the delay gives the scheduler time to decide the results just stored.
"""

from __future__ import annotations

import anyio
import nats.errors
from nats.aio.msg import Msg
from structlog.typing import FilteringBoundLogger

NAK_TIMEOUT_SECONDS = 2.0
PARTIAL_REDELIVERY_DELAY = 1.0


class HeldMessage:
    def __init__(self, msg: Msg, attempts: int, message_log: FilteringBoundLogger) -> None:
        self.msg = msg
        self.log = message_log
        self.since = anyio.current_time()  # when the server last heard the message is being worked on
        self.attempts = attempts  # that it carries
        self._left = attempts
        self._done = 0
        self._handed_back = 0

    @property
    def unsettled(self) -> int:
        return self._left

    async def settle(self, *, handed_back: bool, attempts: int = 1) -> None:
        """``attempts`` more are settled; the last one acks or hands back the message (shielded: also when
        cancelled)."""
        if handed_back:
            self._handed_back += attempts
        else:
            self._done += attempts
        self._left -= attempts
        if self._left:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(NAK_TIMEOUT_SECONDS):
            if not self._handed_back:
                await ack(self.msg, self.log)
            elif not self._done:
                await nak(self.msg, self.log)
            else:
                self.log.info("dispatch_partly_handed_back", done=self._done, handed_back=self._handed_back)
                await nak(self.msg, self.log, delay=PARTIAL_REDELIVERY_DELAY)


async def ack(msg: Msg, message_log: FilteringBoundLogger) -> None:
    """Acknowledge without awaiting the server's reply: the results are stored already, and if the ack is lost the
    redelivered attempts' results are deduplicated; the connection delivers it before any later pull request."""
    try:
        await msg.ack()
    except nats.errors.Error as exc:
        message_log.warning("ack_failed", error=repr(exc))


async def nak(msg: Msg, message_log: FilteringBoundLogger, delay: float | None = None) -> None:
    try:
        await msg.nak(delay=delay)
    except nats.errors.Error as exc:
        message_log.warning("nak_failed", error=repr(exc))
