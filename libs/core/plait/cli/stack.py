"""The embedded default: a local nats-server and PostgreSQL, and the three services, in one process."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec

from plait.errors import PlaitError
from plait.settings import Settings

DEV_FILE = "dev.json"


class StackInfo(msgspec.Struct, frozen=True):
    """Where a running stack is, as ``plait dev`` advertises it to other commands."""

    nats_url: str
    database_url: str
    pid: int


@contextlib.contextmanager
def _exclusive(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "embedded.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlaitError(
                f"another embedded plait stack is using {home}; use it (it writes {home / DEV_FILE}), "
                "or set PLAIT_HOME to another folder"
            ) from None
        yield


@contextlib.asynccontextmanager
async def embedded_servers(settings: Settings) -> AsyncIterator[StackInfo]:
    """Start nats-server and PostgreSQL (unless PLAIT_DATABASE_URL names one) under PLAIT_HOME/data."""
    from plait.embedded import NatsServer, PostgresServer

    data = settings.home_path / "data"
    with _exclusive(settings.home_path):
        (data / "nats").mkdir(parents=True, exist_ok=True)
        nats_server = await anyio.to_thread.run_sync(
            lambda: NatsServer.start(data / "nats", sync_always=settings.nats_sync == "always")
        )
        postgres = None
        try:
            if settings.database_url:
                database_url = settings.database_url
            else:
                (data / "postgres").mkdir(parents=True, exist_ok=True)
                postgres = await anyio.to_thread.run_sync(PostgresServer.start, data / "postgres")
                database_url = postgres.url
            yield StackInfo(nats_url=nats_server.url, database_url=database_url, pid=os.getpid())
        finally:
            with anyio.CancelScope(shield=True):
                if postgres is not None:
                    await anyio.to_thread.run_sync(postgres.stop)
                await anyio.to_thread.run_sync(nats_server.stop)


ALL_SERVICES = ("scheduler", "executor", "catalog")


@contextlib.asynccontextmanager
async def embedded_services(
    settings: Settings, info: StackInfo, services: tuple[str, ...] = ALL_SERVICES
) -> AsyncIterator[None]:
    """The named services (by default a scheduler, an executor and a catalog) against ``info``'s servers."""
    from plait_catalog import CatalogService
    from plait_executor import ExecutorService
    from plait_scheduler import SchedulerService

    replica = settings.replica_name
    async with anyio.create_task_group() as tg:
        if "scheduler" in services:
            await tg.start(
                SchedulerService(
                    info.nats_url,
                    replica=replica,
                    cluster=settings.cluster,
                    ack_wait=settings.ack_wait_seconds,
                    stream_replicas=settings.stream_replicas,
                ).run
            )
        if "executor" in services:
            executor = ExecutorService(
                info.nats_url,
                cluster=settings.cluster,
                queue=settings.queue,
                concurrency=settings.concurrency or None,
                worker_name=replica,
                ack_wait_seconds=settings.ack_wait_seconds,
            )
            await tg.start(executor.run)
        if "catalog" in services:
            await tg.start(CatalogService(info.nats_url, info.database_url, replica=replica).run)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


def running_dev_stack(settings: Settings) -> StackInfo | None:
    """The stack a live ``plait dev`` advertises, if there is one."""
    path = settings.home_path / DEV_FILE
    try:
        info = msgspec.json.decode(path.read_bytes(), type=StackInfo)
        os.kill(info.pid, 0)
    except (FileNotFoundError, msgspec.DecodeError, ProcessLookupError, PermissionError):
        return None
    return info


def advertise(settings: Settings, info: StackInfo) -> Path:
    path = settings.home_path / DEV_FILE
    path.write_bytes(msgspec.json.encode(info))
    return path


@contextlib.asynccontextmanager
async def nats_for_command(settings: Settings, services: tuple[str, ...] = ALL_SERVICES) -> AsyncIterator[str]:
    """The NATS URL a command should use: PLAIT_NATS_URL, a running ``plait dev``, or a stack started now
    (with ``services`` running until the command is done)."""
    if settings.nats_url:
        yield settings.nats_url
        return
    dev = running_dev_stack(settings)
    if dev is not None:
        yield dev.nats_url
        return
    async with embedded_servers(settings) as info, embedded_services(settings, info, services):
        yield info.nats_url
