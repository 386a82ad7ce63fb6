"""The embedded stack as `plait run` starts it, but with the server processes in hand (for their PIDs): its records
signed with the home key and its dispatches checked against the home trust store, as on the default path."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import anyio
import anyio.to_thread

from bench.procs import Group
from plait.protocol import signing
from plait.settings import Settings
from plait_cli.embedded import NatsServer, PostgresServer, find_nats_server, lower_priority
from plait_cli.home import StackInfo
from plait_cli.home_keys import use_home_keys


@dataclass
class Servers:
    info: StackInfo
    nats: NatsServer
    postgres: PostgresServer

    def groups(self) -> dict[str, Group]:
        """Processes to measure: this one (services, client, executor workers), nats-server, PostgreSQL."""
        return {
            "plait": Group(os.getpid(), True, exclude=(self.nats.pid, self.postgres.pid)),
            "nats-server": Group(self.nats.pid, False),
            "postgres": Group(self.postgres.pid, True),
        }


@contextlib.contextmanager
def home_keys(settings: Settings) -> Iterator[None]:
    """The home key and trust store of ``settings`` for this process and the services it starts (``use_home_keys``,
    as ``plait run`` does), whatever an earlier stack of this process used; put back on exit."""
    variables = (signing.SIGNING_KEY_FILE, signing.TRUST_STORE)
    saved = {name: os.environ.pop(name, None) for name in variables}
    try:
        use_home_keys(settings)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        signing.process_signer.cache_clear()


@contextlib.asynccontextmanager
async def servers(settings: Settings) -> AsyncIterator[Servers]:
    """nats-server and PostgreSQL under PLAIT_HOME/data, as ``plait_cli.stack.embedded_servers`` starts them, with
    the home keys (``home_keys``)."""
    with home_keys(settings):
        async with _servers(settings) as started:
            yield started


@contextlib.asynccontextmanager
async def _servers(settings: Settings) -> AsyncIterator[Servers]:
    data = settings.home_path / "data"
    (data / "nats").mkdir(parents=True, exist_ok=True)
    (data / "postgres").mkdir(parents=True, exist_ok=True)
    nats = await anyio.to_thread.run_sync(
        lambda: NatsServer.start(data / "nats", sync_always=settings.nats_sync == "always")
    )
    try:
        postgres = await anyio.to_thread.run_sync(PostgresServer.start, data / "postgres")
        lower_priority(postgres.pid, settings.background_niceness)
        try:
            info = StackInfo(nats_url=nats.url, database_url=postgres.url, pid=os.getpid())
            yield Servers(info, nats, postgres)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(postgres.stop)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(nats.stop)


def nats_server_version() -> str:
    try:
        out = subprocess.run([str(find_nats_server()), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or out.stderr.strip() or "unknown"
