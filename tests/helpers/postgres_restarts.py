"""Restarting a test's own PostgreSQL server, for tests that stop it on purpose."""

from __future__ import annotations

import pytest

from plait_cli import embedded
from plait_cli.embedded import PostgresServer


def restarted_on_the_same_port(server: PostgresServer) -> PostgresServer:
    """``server``, stopped, started again on its data and port (clients reconnect to the same URL)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedded, "_free_port", lambda: server.port)
        return PostgresServer.start(server.data_dir)
