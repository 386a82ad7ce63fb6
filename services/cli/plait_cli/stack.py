"""The embedded default: a local nats-server and PostgreSQL, and the three services, as child processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import anyio
import anyio.to_thread
import msgspec
from rich.console import Console

from plait.errors import InputError, PlaitError
from plait.settings import VARIABLES as SETTING_VARIABLES
from plait.settings import Settings
from plait_cli.home import Report, StackInfo, exclusive, running_dev_stack
from plait_cli.home_keys import use_home_keys
from plait_cli.secure_dev import as_services, ensure_streams_as_operator, secure_nats_config


def _ignore(step: str) -> None:
    pass


def print_steps(console: Console) -> Report:
    """A ``Report`` that prints each step, dimmed, on ``console``."""
    return lambda step: console.print(f"[dim]{step}[/]", highlight=False, soft_wrap=True)


@contextlib.asynccontextmanager
async def embedded_servers(
    settings: Settings, on_nats: Callable[[str], None] | None = None, report: Report = _ignore, *, secure: bool = False
) -> AsyncIterator[StackInfo]:
    """Start nats-server and PostgreSQL (unless PLAIT_DATABASE_URL names one) under PLAIT_HOME/data.

    ``on_nats(url)`` is called as soon as nats-server is up, before PostgreSQL starts (which takes
    over a second on a fresh PLAIT_HOME): services that need only NATS can start meanwhile.
    """
    from plait_cli.embedded import NatsServer, PostgresServer, lower_priority

    data = settings.home_path / "data"
    with exclusive(settings.home_path, report):
        (data / "nats").mkdir(parents=True, exist_ok=True)
        report(f"starting nats-server ({data / 'nats'})")
        extra, env = secure_nats_config(settings.home_path, data / "nats") if secure else ("", {})
        nats_server = await anyio.to_thread.run_sync(
            lambda: NatsServer.start(
                data / "nats", sync_always=settings.nats_sync == "always", extra_config=extra, extra_env=env
            )
        )
        postgres = None
        try:
            if secure:  # the services may not make the streams: the operator does, before they start
                await ensure_streams_as_operator(settings.home_path, nats_server.url)
            if on_nats is not None:
                on_nats(nats_server.url)
            if settings.database_url:
                database_url = settings.database_url
            else:
                (data / "postgres").mkdir(parents=True, exist_ok=True)
                report(f"starting PostgreSQL ({data / 'postgres'})")
                postgres = await anyio.to_thread.run_sync(PostgresServer.start, data / "postgres")
                lower_priority(postgres.pid, settings.background_niceness)
                database_url = postgres.url
            yield StackInfo(nats_url=nats_server.url, database_url=database_url, pid=os.getpid())
        finally:
            with anyio.CancelScope(shield=True):
                if postgres is not None:
                    await anyio.to_thread.run_sync(postgres.stop)
                await anyio.to_thread.run_sync(nats_server.stop)


ALL_SERVICES = ("scheduler", "executor", "catalog")
READY_FD = "PLAIT_READY_FD"  # a child service writes a byte to this descriptor once it serves
PARENT_PID = "PLAIT_PARENT_PID"  # and stops by itself when its parent is gone
STOP_TIMEOUT = 10.0  # seconds from SIGTERM to SIGKILL
START_TIMEOUT = 60.0
_POLL = 0.05


class ServiceProcess:
    """One service (``python -m plait_cli.main scheduler|executor|catalog``) as a child process.

    It runs in its own session, so a Ctrl-C in the terminal reaches only the owner, which stops
    the services before the servers they use; it is stopped by signalling exactly its PID.
    """

    def __init__(
        self, name: str, process: subprocess.Popen[bytes], ready: socket.socket, log_file: Path | None = None
    ) -> None:
        self.name, self.process, self.ready, self.log_file = name, process, ready, log_file
        self._terminated = False

    @classmethod
    def spawn(cls, name: str, env: dict[str, str], log_file: Path | None) -> ServiceProcess:
        parent_end, child_end = socket.socketpair()
        env = {**env, READY_FD: str(child_end.fileno()), PARENT_PID: str(os.getpid())}
        argv = [sys.executable, "-m", "plait_cli.main", name]
        try:
            with contextlib.ExitStack() as files:
                output = files.enter_context(_append(log_file)) if log_file is not None else None
                process = subprocess.Popen(  # noqa: S603  plait's or PostgreSQL's executable, arguments built here, no shell
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    pass_fds=(child_end.fileno(),),
                    start_new_session=True,
                )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        return cls(name, process, parent_end, log_file)

    async def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the service says it serves; ``PlaitError`` if it exits (or says nothing) first."""
        deadline = time.monotonic() + timeout
        while True:
            with anyio.move_on_after(_POLL):
                await anyio.wait_readable(self.ready)
                if self.ready.recv(1):
                    return
                await anyio.sleep(_POLL)  # closed without a word: the exit status follows
            see = f"; see its log {self.log_file}" if self.log_file else ""
            if self.process.poll() is not None:
                raise PlaitError(
                    f"the {self.name} service exited with status {self.process.returncode} while starting{see}"
                )
            if time.monotonic() > deadline:
                raise PlaitError(f"the {self.name} service did not start within {timeout:.0f}s{see}")

    def terminate(self) -> None:
        """SIGTERM, once: the service stops serving and hands back its work (a second one would kill it)."""
        if not self._terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (the service hands back its work), then SIGKILL if it still runs after ``timeout`` seconds."""
        try:
            self.terminate()
            if self.process.poll() is None:
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            self.ready.close()


@contextlib.contextmanager
def _append(path: Path) -> Iterator[IO[bytes]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        yield file


def service_environment(
    settings: Settings, nats_url: str, database_url: str = "", log_format: str | None = None
) -> dict[str, str]:
    """The environment of a child service: this one's, with every setting made explicit (``settings``
    may hold values that came from elsewhere than the environment) and the servers' URLs."""
    env = {key: value for key, value in os.environ.items() if key not in (READY_FD, PARENT_PID)}
    values = {field: getattr(settings, field) for field in SETTING_VARIABLES}
    values.update(nats_url=nats_url, database_url=database_url or settings.database_url)
    if log_format:
        values["log_format"] = log_format
    for field, variable in SETTING_VARIABLES.items():
        value = values[field]
        if value is None or value == "":
            env.pop(variable, None)
        else:
            env[variable] = str(value)
    return env


class ServiceGroup:
    """Child service processes of the embedded stack: started, waited for, watched, and all stopped.

    Their logs are appended to ``log_file`` (else they go to this process's stderr, in ``log_format``).
    """

    def __init__(self, settings: Settings, log_file: Path | None = None, log_format: str | None = None) -> None:
        self.settings, self.log_file, self.log_format = settings, log_file, log_format
        self.children: list[ServiceProcess] = []

    def spawn(self, names: Iterable[str], nats_url: str, database_url: str = "") -> None:
        """Start the named services (in ``ALL_SERVICES`` order) without waiting for them."""
        from plait_cli.embedded import lower_priority

        wanted = set(names)
        env = service_environment(self.settings, nats_url, database_url, self.log_format)
        for name in ALL_SERVICES:
            if name in wanted and name not in {child.name for child in self.children}:
                child = ServiceProcess.spawn(name, env, self.log_file)
                if name == "catalog":
                    lower_priority(child.process.pid, self.settings.background_niceness)
                self.children.append(child)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Once every service serves: the block, cancelled (``PlaitError``) if one exits on its own."""
        for child in self.children:
            await child.wait_ready()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    async def _watch(self) -> None:
        while True:
            await anyio.sleep(_POLL * 4)
            for child in self.children:
                if child.process.poll() is not None:
                    raise PlaitError(f"the {child.name} service exited with status {child.process.returncode}")

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to all at once (they stop in parallel); SIGKILL to those still running ``timeout``
        seconds later. Safe to call again; shielded from cancellation."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._stop_all, timeout)

    def _stop_all(self, timeout: float) -> None:
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + timeout
        for child in self.children:
            child.stop(max(0.0, deadline - time.monotonic()))


@contextlib.asynccontextmanager
async def embedded_services(
    settings: Settings,
    info: StackInfo,
    services: tuple[str, ...] = ALL_SERVICES,
    *,
    processes: bool | None = None,
    log_file: Path | None = None,
    log_format: str | None = None,
) -> AsyncIterator[None]:
    """The named services (by default a scheduler, an executor and a catalog) against ``info``'s servers.

    With ``processes`` (by default, unless PLAIT_EMBEDDED_SERVICES=in-process) each runs in a child process of
    its own (``ServiceGroup``), so they do not share one core's worth of Python; leaving the block stops them
    all by PID, also on errors and cancellation. Without, they run as tasks of this process's event loop (less
    memory and a faster start).
    """
    if processes is None:
        processes = settings.embedded_services == "processes"
    if not services:
        yield
        return
    if not processes:
        async with _in_process(settings, info, services):
            yield
        return
    group = ServiceGroup(settings, log_file, log_format)
    try:
        group.spawn(services, info.nats_url, info.database_url)
        async with group.running():
            yield
    finally:
        await group.stop()


@contextlib.asynccontextmanager
async def _in_process(settings: Settings, info: StackInfo, services: tuple[str, ...]) -> AsyncIterator[None]:
    from plait_catalog import CatalogService
    from plait_executor import ExecutorService
    from plait_scheduler import SchedulerService

    settings = msgspec.structs.replace(settings, nats_url=info.nats_url, database_url=info.database_url)
    async with anyio.create_task_group() as tg:
        if "scheduler" in services:
            await tg.start(SchedulerService.from_settings(settings).run)
        if "executor" in services:
            await tg.start(ExecutorService.from_settings(settings).run)
        if "catalog" in services:
            await tg.start(CatalogService.from_settings(settings).run)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def embedded_stack(
    settings: Settings,
    services: tuple[str, ...] = ALL_SERVICES,
    *,
    log_file: Path | None = None,
    log_format: str | None = None,
    report: Report = _ignore,
    secure: bool = False,
) -> AsyncIterator[StackInfo]:
    """The servers and the named services, each service started as soon as what it needs is up:
    the scheduler and the executor right after nats-server (their start-up overlaps PostgreSQL's),
    the catalog after PostgreSQL. The services are stopped before the servers. With
    PLAIT_EMBEDDED_SERVICES=in-process they run on this process's loop, once both servers are up.
    ``report`` is told each step. With ``secure``, nats-server authenticates its users (``secure_dev``)."""
    started = time.monotonic()
    if secure and settings.embedded_services == "in-process":
        raise InputError("plait dev --secure runs its services as processes: unset PLAIT_EMBEDDED_SERVICES")
    use_home_keys(settings)
    if settings.embedded_services == "in-process":
        async with embedded_servers(settings, report=report) as info:
            _report_starting(report, services)
            async with embedded_services(settings, info, services, processes=False):
                report(f"embedded stack ready in {time.monotonic() - started:.1f}s")
                yield info
        return
    group = ServiceGroup(as_services(settings) if secure else settings, log_file, log_format)
    early = tuple(name for name in services if name != "catalog")

    def start_early(url: str) -> None:
        _report_starting(report, early)
        group.spawn(early, url)

    try:
        async with embedded_servers(settings, on_nats=start_early, report=report, secure=secure) as info:
            try:
                _report_starting(report, tuple(name for name in services if name not in early))
                group.spawn(services, info.nats_url, info.database_url)
                async with group.running():
                    report(f"embedded stack ready in {time.monotonic() - started:.1f}s")
                    yield info
            finally:
                await group.stop()
    finally:
        await group.stop()  # when the servers failed to start after the early services did


def _report_starting(report: Report, services: tuple[str, ...]) -> None:
    if services:
        names = f"{', '.join(services[:-1])} and {services[-1]}" if len(services) > 1 else services[0]
        report(f"starting the {names}")


@contextlib.asynccontextmanager
async def nats_for_command(
    settings: Settings, services: tuple[str, ...] = ALL_SERVICES, report: Report | None = None
) -> AsyncIterator[str]:
    """The NATS URL a command should use: PLAIT_NATS_URL, a running ``plait dev``, or a stack started now
    (with ``services`` running until the command is done; ``report`` is told each step of its start)."""
    if settings.nats_url:
        yield settings.nats_url
        return
    use_home_keys(settings)
    dev = running_dev_stack(settings)
    if dev is not None:
        yield dev.nats_url
        return
    log_file = settings.home_path / "logs" / "plait.log"
    async with embedded_stack(settings, services, log_file=log_file, report=report or _ignore) as info:
        yield info.nats_url
