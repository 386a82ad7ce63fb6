"""A TCP proxy on loopback in front of a server: ``cut()`` drops every connection through it and refuses new ones
until ``mend()``, a network partition of whoever connects through it while everyone else stays connected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlparse

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, SocketAttribute, SocketStream


class CuttableProxy:
    def __init__(self, target_url: str, port: int) -> None:
        target = urlparse(target_url)
        self._host, self._target_port = target.hostname or "127.0.0.1", target.port or 4222
        self.url = f"nats://127.0.0.1:{port}"
        self.cut_off = False
        self._open: set[anyio.CancelScope] = set()

    def cut(self) -> None:
        self.cut_off = True
        for scope in self._open:
            scope.cancel()

    def mend(self) -> None:
        self.cut_off = False

    async def handle(self, downstream: SocketStream) -> None:
        async with downstream:
            if self.cut_off:
                return
            with anyio.CancelScope() as scope:
                self._open.add(scope)
                try:
                    async with await anyio.connect_tcp(self._host, self._target_port) as upstream:
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(_pipe, downstream, upstream, tg.cancel_scope)
                            tg.start_soon(_pipe, upstream, downstream, tg.cancel_scope)
                finally:
                    self._open.discard(scope)


async def _pipe(source: ByteReceiveStream, sink: ByteSendStream, both: anyio.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    both.cancel()  # one side closed: close the other


@asynccontextmanager
async def cuttable_proxy(target_url: str) -> AsyncIterator[CuttableProxy]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)  # noqa: S610  anyio's typed attribute, not Django's extra()
    async with anyio.create_task_group() as tg:
        proxy = CuttableProxy(target_url, port)
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            proxy.cut()
            tg.cancel_scope.cancel()
