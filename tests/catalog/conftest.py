"""Fixtures of the catalog tests: a connection to nats-server with the streams made, an ``EventLog`` on it, and a
connection to the test's database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from nats.aio.client import Client as NATS

from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait_catalog import db
from tests.helpers.catalog_log import EventLog


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    connection = await connect(nats_url, "test-catalog")
    await ensure_streams(connection.jetstream())
    yield connection
    await connection.close()


@pytest.fixture
def log(nc: NATS) -> EventLog:
    return EventLog(nc.jetstream())


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await db.connect(database_url, "test-catalog")
    yield connection
    await connection.close()
