"""Unit tests start no server: here each fixture of ``tests/conftest.py`` that starts or names a nats-server or
PostgreSQL fails the test that asks for it, by name or through ``request.getfixturevalue``. A test that needs one
belongs among the integration tests at the top of ``tests/``."""

from __future__ import annotations

from typing import NoReturn

import pytest

SERVER_FIXTURES = frozenset({"postgres_server", "database_url", "private_postgres", "nats_server", "nats_url"})


def refuse(fixture: str) -> NoReturn:
    pytest.fail(f"unit tests start no server, but this one asks for '{fixture}': it belongs outside tests/unit")


@pytest.fixture
def postgres_server() -> NoReturn:
    refuse("postgres_server")


@pytest.fixture
def database_url() -> NoReturn:
    refuse("database_url")


@pytest.fixture
def private_postgres() -> NoReturn:
    refuse("private_postgres")


@pytest.fixture
def nats_server() -> NoReturn:
    refuse("nats_server")


@pytest.fixture
def nats_url() -> NoReturn:
    refuse("nats_url")
