"""A JetStream context for the commands that read and act on streams directly (no catalog needed)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from nats.aio.client import Client as NATS

from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams_exist
from plait.settings import Settings
from plait_cli.stack import nats_for_command


@contextlib.asynccontextmanager
async def operator_nats(settings: Settings, name: str, services: tuple[str, ...] = ()) -> AsyncIterator[NATS]:
    """A connection to the deployment's NATS (or an embedded one running ``services``), its streams there (made when
    missing where NATS has no credentials; else ``StreamsMissing`` says to run ``plait streams ensure``)."""
    async with nats_for_command(settings, services=services) as nats_url:
        nc = await connect(nats_url, name)
        try:
            await ensure_streams_exist(nc.jetstream())
            yield nc
        finally:
            await nc.close()
