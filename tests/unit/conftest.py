"""Unit tests start no server: here each fixture of ``tests/conftest.py`` that starts or names a nats-server or
PostgreSQL fails the test that asks for it, by name or through ``request.getfixturevalue``. A test that needs one
belongs among the integration tests at the top of ``tests/``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
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


@pytest.fixture
def loading(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Load user code from the repository root, and forget the modules and search paths that loading added."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]
