"""``plait.catalog.rebuild`` over NATS: every replica hears it, only the projection's leader answers.

The reply inbox gets progress replies (at most one per ``PROGRESS_SECONDS`` after the first), then one with the
result or the error (``plait.protocol.rebuild.RebuildReply``).
"""

from __future__ import annotations

import time

import anyio
import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS

from plait.protocol import subjects
from plait.protocol.rebuild import RebuildError, RebuildProgress, RebuildReply
from plait_catalog.projector import Projector
from plait_catalog.rebuild import RebuildFailed, RebuildRefused

PROGRESS_SECONDS = 0.5

_encoder = msgspec.json.Encoder()


class RebuildResponder:
    """Subscribes without a queue group, so that the request reaches the leader whichever replica it is."""

    def __init__(self, nc: NATS, projector: Projector, replica: str) -> None:
        self._nc = nc
        self._projector = projector
        self._log = structlog.get_logger().bind(replica=replica)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        subscription = await self._nc.subscribe(subjects.CATALOG_REBUILD)
        try:
            await self._nc.flush()  # twice: see QueryResponder.serve
            await self._nc.flush()
            async with anyio.create_task_group() as tg:
                task_status.started()
                async for message in subscription.messages:
                    if message.reply and self._projector.is_leader:
                        tg.start_soon(self._rebuild, message.reply)
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.unsubscribe()

    async def _rebuild(self, reply: str) -> None:
        last_sent = float("-inf")

        async def progress(update: RebuildProgress) -> None:
            nonlocal last_sent
            if update.messages and time.monotonic() - last_sent < PROGRESS_SECONDS:
                return
            last_sent = time.monotonic()
            await self._send(reply, RebuildReply(progress=update))

        try:
            answer = RebuildReply(result=await self._projector.rebuild(progress))
        except RebuildRefused as exc:
            answer = RebuildReply(error=RebuildError(type="refused", message=str(exc)))
        except RebuildFailed as exc:
            answer = RebuildReply(error=RebuildError(type="failed", message=str(exc)))
        await self._send(reply, answer)

    async def _send(self, reply: str, answer: RebuildReply) -> None:
        try:
            await self._nc.publish(reply, _encoder.encode(answer))
        except nats.errors.Error as exc:
            self._log.warning("rebuild_reply_failed", error=str(exc) or type(exc).__name__)
