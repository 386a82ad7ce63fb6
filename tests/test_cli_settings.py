"""Settings through the real CLI: a database URL is the catalog's to use, in any form libpq accepts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from plait_cli.embedded import PostgresServer

REPO = Path(__file__).resolve().parent.parent


def plait(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait_cli.main", *args],
        cwd=REPO,
        env={**os.environ, "PLAIT_NATS_URL": "", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_the_catalog_connects_through_a_unix_socket_url(tmp_path: Path, private_postgres: PostgresServer) -> None:
    socket_url = f"postgresql://postgres@/postgres?host={private_postgres.data_dir}&port={private_postgres.port}"
    env = {"PLAIT_HOME": str(tmp_path / "home"), "PLAIT_DATABASE_URL": socket_url}
    done = plait(["run", "examples/hello.py:greet", "--name", "socket"], env)
    assert done.returncode == 0, done.stderr
    connection = await asyncpg.connect(private_postgres.url)
    try:  # a fresh server: the catalog made its tables, through the socket
        made = await connection.fetchval("SELECT to_regclass('executions') IS NOT NULL")
    finally:
        await connection.close()
    assert made


def test_a_command_that_uses_no_database_does_not_check_its_url(tmp_path: Path) -> None:
    env = {"PLAIT_HOME": str(tmp_path / "home"), "PLAIT_DATABASE_URL": "whatever the catalog makes of it"}
    done = plait(["schema", "export", str(tmp_path / "schemas")], env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "schemas").is_dir()
