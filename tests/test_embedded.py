from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import NamedTuple

import asyncpg
import nats
import pytest
from nats.js.api import StorageType

from plait_cli import embedded
from plait_cli.embedded import NatsServer, PostgresServer, ServerStartError, find_nats_server
from tests.helpers.embedded_processes import (
    alive,
    command_line,
    kill_all,
    parent_pid,
    plait,
    processes_using,
    wait_for_dev,
    wait_until_gone,
)


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
    with pytest.raises(ServerStartError, match="PLAIT_NATS_SERVER_BIN"):
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


class Run(NamedTuple):
    returncode: int
    out: str
    err: str
    services: dict[int, str]  # the service processes seen while it ran: PID -> service
    left: list[int]  # processes of its PLAIT_HOME still running a few seconds after it ended


SERVICE_COMMANDS = (b"scheduler", b"executor", b"catalog")


def run_watching_services(args: list[str], home: Path, extra_env: dict[str, str] | None = None) -> Run:
    """Run ``plait ARGS`` to its end, noting the service processes it starts (its children running
    ``python -m plait_cli.main SERVICE``); whatever of it is left afterwards is killed."""
    run = plait(args, home, extra_env)
    services: dict[int, str] = {}
    own_command_line = command_line(run.pid)
    try:
        while run.poll() is None:  # no event to await from another process: poll /proc
            for pid in processes_using(home):
                # A child forked but not yet exec'ed still shows plait run's own command line: not a service (yet).
                if parent_pid(pid) != run.pid or (its_command_line := command_line(pid)) == own_command_line:
                    continue
                argv = its_command_line.split(b"\0")
                if argv[1:3] == [b"-m", b"plait_cli.main"] and argv[3] in SERVICE_COMMANDS:
                    services[pid] = argv[3].decode()
            time.sleep(0.02)
        out, err = run.communicate(timeout=60)
    finally:
        left = wait_until_gone(home, timeout=5)
        kill_all(left)
        run.kill()
    return Run(run.returncode, out, err, services, left)


def test_plait_run_runs_each_service_in_its_own_process_and_leaves_none(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = run_watching_services(["run", "examples/hello.py:greet"], home)
    assert run.returncode == 0, run.err
    assert run.out == 'result = "HELLO, WORLD! HELLO, WORLD!"\n'
    assert "launched execution" in run.err and "succeeded in" in run.err
    assert '"event"' not in run.err, "the services log to PLAIT_HOME/logs, not to the terminal"
    assert sorted(run.services.values()) == ["catalog", "executor", "scheduler"]
    assert not run.left, f"left running: {run.left}"
    log = (home / "logs" / "plait.log").read_text()
    assert "scheduler_started" in log and "executor_started" in log and "catalog_started" in log


def test_plait_run_with_in_process_services_starts_no_service_process(tmp_path: Path) -> None:
    run = run_watching_services(
        ["run", "examples/hello.py:greet"], tmp_path / "home", {"PLAIT_EMBEDDED_SERVICES": "in-process"}
    )
    assert run.returncode == 0, run.err
    assert run.out == 'result = "HELLO, WORLD! HELLO, WORLD!"\n'
    assert not run.services, "the services ran on plait run's own event loop"
    assert not run.left, f"left running: {run.left}"


def test_ctrl_c_on_plait_dev_stops_every_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dev = plait(["dev"], home)
    try:
        wait_for_dev(dev, home)
        running = processes_using(home)
        services = [pid for pid in running if parent_pid(pid) == dev.pid and b"plait_cli.main\0" in command_line(pid)]
        assert len(services) == 3, [command_line(pid) for pid in running]
        dev.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        dev.communicate(timeout=30)
        left = wait_until_gone(home)
    finally:
        kill_all(processes_using(home))
        dev.kill()
    assert not left, f"left running: {[command_line(pid) for pid in left]}"
    assert not [pid for pid in running if alive(pid)]


def test_the_catalog_and_postgres_run_at_background_priority(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dev = plait(["dev"], home, {"PLAIT_BACKGROUND_NICENESS": "7"})
    try:
        wait_for_dev(dev, home)
        niceness = {}
        for pid in processes_using(home):
            argv = command_line(pid).split(b"\0")
            if parent_pid(pid) == dev.pid and argv[1:3] == [b"-m", b"plait_cli.main"]:
                niceness[argv[3].decode()] = os.getpriority(os.PRIO_PROCESS, pid)
            elif parent_pid(pid) == dev.pid and argv[0].endswith(b"/postgres"):
                niceness["postgres"] = os.getpriority(os.PRIO_PROCESS, pid)
        dev.send_signal(signal.SIGINT)
        dev.communicate(timeout=30)
    finally:
        kill_all(processes_using(home))
        dev.kill()
    ours = os.getpriority(os.PRIO_PROCESS, 0)  # what the services inherit
    background = max(ours, 7)
    assert niceness == {"scheduler": ours, "executor": ours, "catalog": background, "postgres": background}


def test_services_stop_by_themselves_when_their_parent_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dev = plait(["dev"], home)
    try:
        wait_for_dev(dev, home)
        services = [
            pid
            for pid in processes_using(home)
            if parent_pid(pid) == dev.pid and b"plait_cli.main\0" in command_line(pid)
        ]
        assert len(services) == 3
        dev.kill()  # no chance to stop anything: the services notice they are orphans
        dev.communicate(timeout=30)
        deadline = time.monotonic() + 20
        while (still_running := [pid for pid in services if alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not still_running, f"services still running: {still_running}"
    finally:
        kill_all(processes_using(home))  # the servers are orphaned by a SIGKILL: ours to clean up


async def test_a_service_that_cannot_start_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    from plait.errors import PlaitError
    from plait.settings import load_settings
    from plait_cli.home import StackInfo
    from plait_cli.stack import embedded_services

    settings = load_settings({}, home=str(tmp_path / "home"))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"nats://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: refused
    info = StackInfo(nats_url=nowhere, database_url="postgresql://postgres@127.0.0.1:1/postgres", pid=os.getpid())
    before = set(child_pids(os.getpid()))
    with pytest.raises(PlaitError, match="the scheduler service exited with status"):
        async with embedded_services(settings, info, ("scheduler",), log_file=tmp_path / "log"):
            pytest.fail("the block must not run")
    assert set(child_pids(os.getpid())) <= before
    assert "cannot connect to NATS" in (tmp_path / "log").read_text()
