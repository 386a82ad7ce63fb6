"""Shared fixtures: real nats-server and PostgreSQL processes, or existing ones named by the environment.

PLAIT_TEST_DATABASE_URL: use that PostgreSQL server instead of starting one; each test still gets a fresh
database on it.
PLAIT_TEST_NATS_URL: `nats_url` returns that URL instead of starting a server per test. Streams and
consumers on it are then shared across tests and runs, so tests must use unique names or tolerate
existing ones. `nats_server` always starts a private server, for tests that stop or kill it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from nats.js import JetStreamContext

from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait_cli.embedded import NatsServer, PostgresServer, create_database


class DatabaseServer(Protocol):
    url: str

    def create_database(self, name: str) -> str: ...


class ExternalPostgres:
    """An already running PostgreSQL server, given by URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def create_database(self, name: str) -> str:
        return create_database(self.url, name)


@pytest.fixture(scope="session", autouse=True)
def temporary_files_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Temporary files of the processes the tests start (multiprocessing's ``pymp-*`` folders, which a killed
    process leaves behind) go under pytest's own temporary folder, removed after the run. This process keeps
    its own: it is not killed, and cleans up at exit, after pytest has removed its folder."""
    folder = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(folder))
        yield folder


@pytest.fixture(scope="session", autouse=True)
def plait_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("plait-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLAIT_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseServer]:
    if url := os.environ.get("PLAIT_TEST_DATABASE_URL"):
        yield ExternalPostgres(url)
        return
    server = PostgresServer.start(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres_server: DatabaseServer) -> str:
    return postgres_server.create_database(f"plait_test_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone (the session's one is shared), for tests that stop or restart it."""
    server = PostgresServer.start(tmp_path / "postgres")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer.start(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def nats_url(request: pytest.FixtureRequest) -> str:
    if url := os.environ.get("PLAIT_TEST_NATS_URL"):
        return url
    server: NatsServer = request.getfixturevalue("nats_server")
    return server.url


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """JetStream on the test's nats-server, with plait's streams made."""
    nc = await connect(nats_url, "test")
    try:
        await ensure_streams(nc.jetstream())
        yield nc.jetstream()
    finally:
        await nc.close()
