"""PostgreSQL connections for the catalog: jsonb as plain Python values, the advisory lock keys, and waiting for
PostgreSQL while it cannot be reached."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import anyio
import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from plait_catalog import nul_escapes

NOTIFY_CHANNEL = "plait_catalog"
CONNECT_TIMEOUT = 10.0

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A dedicated connection or one borrowed from a pool: the queries and the projection take either."""


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``, derived from a readable name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


MIGRATIONS_LOCK = advisory_key("plait_catalog.migrations")
PROJECTION_LOCK = advisory_key("plait_catalog.projection.main")


async def init_connection(connection: Connection) -> None:
    """Make jsonb columns take and give Python values (msgspec Structs encode as objects), and let text and jsonb
    hold NUL characters (escaped: ``nul_escapes``)."""
    await connection.set_type_codec(
        "jsonb", encoder=nul_escapes.encode_json, decoder=nul_escapes.decode_json, schema="pg_catalog", format="text"
    )
    await connection.set_type_codec(
        "text", encoder=nul_escapes.escape_text, decoder=nul_escapes.restore_text, schema="pg_catalog", format="text"
    )


LEADER_KEEPALIVE_IDLE_SECONDS = 10
LEADER_KEEPALIVE_INTERVAL_SECONDS = 5
LEADER_KEEPALIVE_COUNT = 3
LEADER_SILENCE_SECONDS = 15
"""How long the projecting leader's session may stay silent (no statement, in a transaction or not) before PostgreSQL
ends it; the leader pings more often than that (``LEADER_PING_SECONDS``)."""
LEADER_PING_SECONDS = 5.0
LEADER_COMMAND_SECONDS = 30.0
"""The longest the leader waits for one statement's (or one batch's) answer before it gives its session up."""


def leader_settings() -> dict[str, str]:
    """Session settings that end the projecting leader's session, and with it the projection lock, soon after its
    host goes silent (a partition, a lost node: no FIN, no RST), instead of when the OS gives up (2 hours and more).
    The server's TCP keepalives find a host that is gone; the silence timeouts find one behind a proxy that
    answers them (pgbouncer, a cloud SQL proxy), or a leader that hangs."""
    silence = f"{LEADER_SILENCE_SECONDS}s"
    return {
        "tcp_keepalives_idle": str(LEADER_KEEPALIVE_IDLE_SECONDS),
        "tcp_keepalives_interval": str(LEADER_KEEPALIVE_INTERVAL_SECONDS),
        "tcp_keepalives_count": str(LEADER_KEEPALIVE_COUNT),
        "idle_session_timeout": silence,
        "idle_in_transaction_session_timeout": silence,
    }


async def connect(
    database_url: str, application_name: str, settings: dict[str, str] | None = None
) -> asyncpg.Connection:
    """One dedicated connection, named so that operators can tell replicas apart in ``pg_stat_activity``.

    Connecting is shielded from cancellation (for at most ``CONNECT_TIMEOUT`` seconds): asyncpg
    cancelled during its TLS probe leaves behind a future whose error nobody reads, logged at exit.
    The caller's next await sees the cancellation, and closes the connection like any other.
    """
    with anyio.CancelScope(shield=True):
        connection = await asyncpg.connect(
            database_url,
            timeout=CONNECT_TIMEOUT,
            server_settings={**_server_settings(application_name), **(settings or {})},
        )
        await init_connection(connection)
    return connection


async def create_pool(database_url: str, application_name: str, max_size: int = 8) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=max_size,
        init=init_connection,
        server_settings=_server_settings(application_name),
    )


def _server_settings(application_name: str) -> dict[str, str]:
    """Session settings, given at connection (a pool's reset keeps them).

    Custom plans only: the catalog's statements take arrays of keys, and the generic plan PostgreSQL switches
    to after five runs of a prepared statement cannot see their length (a 500-key cache look-up went from 2 ms
    to 29 ms).
    """
    return {"application_name": application_name, "plan_cache_mode": "force_custom_plan"}


CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
)
"""What asyncpg raises when the server cannot be reached, goes away, or shuts down."""

RETRIED_ERRORS = (
    *CONNECTION_ERRORS,
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
)
"""What goes away by waiting: the server cannot be reached, or it refuses for now (too many connections, a full
disk, or it is a standby, read-only: a failed-over primary, or one being promoted)."""

FIRST_RETRY_SECONDS = 0.5
LAST_RETRY_SECONDS = 8.0  # the back-off doubles up to this

T = TypeVar("T")


async def when_reachable(attempt: Callable[[], Awaitable[T]], waiting_for: str) -> T:
    """``attempt()``, tried again with exponential back-off for as long as PostgreSQL cannot be reached, or refuses
    it for now (``RETRIED_ERRORS``)."""
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            return await attempt()
        except RETRIED_ERRORS as exc:
            structlog.get_logger().warning(
                "postgres_unavailable", waiting_for=waiting_for, retry_in=delay, error=str(exc) or type(exc).__name__
            )
        await anyio.sleep(delay)
        delay = min(2 * delay, LAST_RETRY_SECONDS)
