from __future__ import annotations

import os
import socket
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.js.api import StorageType

from plait import embedded
from plait.embedded import NatsServer, PostgresServer, ServerStartError, find_nats_server


def assert_dead(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


async def test_nats_server_runs_jetstream_with_sync_always(nats_server: NatsServer) -> None:
    config = (nats_server.data_dir / "nats-server.conf").read_text()
    assert "sync_interval: always" in config

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="EMBEDDED", subjects=["embedded.>"], storage=StorageType.FILE)
        first = await js.publish("embedded.a", b"one")
        second = await js.publish("embedded.b", b"two")
        assert (first.seq, second.seq) == (1, 2)
        info = await js.account_info()
        assert info.streams == 1
        assert info.storage > 0
    finally:
        await nc.close()


async def test_nats_server_keeps_streams_across_restart(tmp_path: Path) -> None:
    with NatsServer.start(tmp_path) as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="DURABLE", subjects=["durable"], storage=StorageType.FILE)
        await js.publish("durable", b"kept")
        await nc.close()

    with NatsServer.start(tmp_path) as server:
        nc = await nats.connect(server.url)
        message = await nc.jetstream().get_msg("DURABLE", 1)
        await nc.close()
    assert message.data == b"kept"


def test_nats_server_stop_and_kill_leave_no_process(tmp_path: Path) -> None:
    server = NatsServer.start(tmp_path / "stopped")
    server.stop()
    assert_dead(server.pid)
    assert not list(server.data_dir.glob("*.ports"))

    server = NatsServer.start(tmp_path / "killed")
    server.kill()
    assert_dead(server.pid)
    server.stop()


def test_nats_server_start_failure_reports_log_tail(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError) as failure:
        NatsServer.start(tmp_path, max_payload=1024 * 1024 * 1024)
    message = str(failure.value)
    assert "nats-server exited" in message
    assert "max_payload" in message
    assert "last lines of" in message


def test_find_nats_server_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLAIT_NATS_SERVER_BIN", str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="PLAIT_NATS_SERVER_BIN"):
        find_nats_server()
    monkeypatch.delenv("PLAIT_NATS_SERVER_BIN")
    assert find_nats_server().is_file()


async def test_postgres_server_serves_databases_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    with PostgresServer.start(data_dir) as server:
        connection = await asyncpg.connect(server.url)
        assert await connection.fetchval("SHOW fsync") == "on"
        await connection.close()

        dsn = server.create_database("orders")
        assert dsn == server.url.rsplit("/", 1)[0] + "/orders"
        connection = await asyncpg.connect(dsn)
        assert await connection.fetchval("SELECT current_database()") == "orders"
        await connection.execute("CREATE TABLE kept (value text); INSERT INTO kept VALUES ('yes')")
        await connection.close()

        children = child_pids(server.pid)
        assert children
    for pid in [server.pid, *children]:
        assert_dead(pid)

    with PostgresServer.start(data_dir) as server:
        connection = await asyncpg.connect(server.url.rsplit("/", 1)[0] + "/orders")
        assert await connection.fetchval("SELECT value FROM kept") == "yes"
        await connection.close()


async def test_database_url_fixture_is_a_fresh_database(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        tables = await connection.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables == 0
    finally:
        await connection.close()


def test_postgres_start_failure_reports_log_tail(tmp_path: Path) -> None:
    data_dir = tmp_path / "broken"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("not a version\n")
    with pytest.raises(ServerStartError) as failure:
        PostgresServer.start(data_dir)
    message = str(failure.value)
    assert "PostgreSQL exited" in message
    assert "could not access the server configuration file" in message


def test_postgres_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    data_file = tmp_path / "pgdata"
    data_file.write_text("")
    with pytest.raises(ServerStartError, match="not a directory"):
        PostgresServer.start(data_file)


def test_postgres_retries_when_its_port_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        free_port = embedded._free_port
        monkeypatch.setattr(embedded, "_free_port", lambda: next(ports, None) or free_port())
        with PostgresServer.start(tmp_path) as server:
            assert server.port != taken.getsockname()[1]
    assert "Address already in use" in (tmp_path / "postgres.log").read_text()
