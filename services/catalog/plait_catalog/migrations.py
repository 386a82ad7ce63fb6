"""Versioned SQL migrations: ``migrations/NNNN_name.sql``, each applied once, in order, in its own transaction."""

from __future__ import annotations

import re
from importlib import resources

import msgspec
import structlog

from plait_catalog.db import MIGRATIONS_LOCK, Connection

_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The migrations shipped with this package, by version."""
    found = []
    for entry in resources.files("plait_catalog").joinpath("migrations").iterdir():
        if match := _FILE_NAME.match(entry.name):
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


async def migrate(connection: Connection) -> list[Migration]:
    """Apply every migration not applied yet; returns those this call applied.

    Each runs in a transaction holding a transaction-level advisory lock, so replicas that start
    together apply each migration exactly once, and the others wait and then see it applied.
    """
    log = structlog.get_logger()
    applied = []
    for migration in available():
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK)
            await connection.execute(_CREATE_TABLE)
            if await connection.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", migration.version):
                continue
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", migration.version, migration.name
            )
        log.info("migration_applied", version=migration.version, name=migration.name)
        applied.append(migration)
    return applied
