"""The catalog after its nats-server restarted: the ordered consumer it followed the log with is gone with the
server; projecting goes on from the stored offset as soon as the connection is made anew."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import structlog.testing

from plait_catalog import CatalogService, projector
from tests.helpers.catalog_log import caught_up, on_a_restartable_server


async def test_projecting_goes_on_at_once_after_the_server_restarted(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Heartbeats a minute apart: noticing the lost consumer by them alone would take two minutes.
    monkeypatch.setattr(projector, "FOLLOW_HEARTBEAT_SECONDS", 60.0)
    async with on_a_restartable_server(tmp_path / "nats") as (server, nc, log):
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                await tg.start(CatalogService(server.url, database_url, replica="one").run)
                await caught_up(nc, await log.succeeded("before", 1))
                await anyio.to_thread.run_sync(server.kill)
                await anyio.to_thread.run_sync(server.start)
                await caught_up(nc, await log.succeeded("after", 2))  # within caught_up's 20 s
                tg.cancel_scope.cancel()
    assert any(e["event"] == "projection_following_again" for e in logs)
