"""The main projection: decisions, registrations and cache fills from the event log, as rows in PostgreSQL.

A batch of stream messages is applied in one transaction together with the stream sequence it
reaches, so a batch is applied all or nothing, and applying it again changes nothing: messages at
or below the stored offset are skipped. The batch loads the rows its decisions touch, applies the
events to them (``rows``, ``lineage_rows``, ``cache_rows``), and writes each changed row once.

Lineage types values by the interfaces of the workflow an execution was launched with. A launch
stores its spec once per workflow version in ``launched_workflows``; a batch reads back the specs of
the executions launched in earlier batches (a version is a content hash, so one row per version is
every execution's spec, and no launch depends on a registration having been projected).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import msgspec
import structlog

from plait import codec
from plait.adapters.cachelog import entry_decoder
from plait.adapters.quarantine import UNREADABLE, Quarantine
from plait.adapters.registry import kind_of, registration_decoder
from plait.adapters.registry import subject_of as registration_subject
from plait.core.cachelog import CacheCleared, CacheEntryRecord, CacheFilled
from plait.core.events import Decision, Registration
from plait.core.lineage import NODE_PRODUCERS
from plait.core.model import WorkflowSpec
from plait.errors import PlaitError
from plait.protocol import subjects
from plait_catalog import cache_rows, lineage_rows, rows
from plait_catalog.cache_rows import CacheEntries, CacheEntryRow
from plait_catalog.db import NOTIFY_CHANNEL, Connection
from plait_catalog.known_workflows import KnownWorkflows, WorkflowKey
from plait_catalog.lineage_rows import ArtifactRow, LaunchedWorkflowRow, Lineage, NodeKey, UseRow, ValueRow
from plait_catalog.rows import AttemptRow, ExecutionRow, NodeRow, RegistryRow, Rows

PROJECTION = "main"
_log = structlog.get_logger()
_DECISIONS = f"{subjects.EVENTS_ROOT}."
_REGISTRATIONS = f"{subjects.REGISTRY_ROOT}."
_CACHE = f"{subjects.CACHE_ROOT}."
_CACHE_ENTRY = ".entry"

PROJECTED_TABLES = (
    "lineage_uses",
    "lineage_artifacts",
    "lineage_values",
    "attempts",
    "node_executions",
    "executions",
    "launched_workflows",
    "registry_entities",
    "cache_entries",
)
"""Every table the projection fills, each before any table it references."""

Record = Decision | Registration | CacheEntryRecord


class StoredMessage(NamedTuple):
    """One message of the event stream, as the projection needs it."""

    sequence: int
    subject: str
    data: bytes
    stored_at: datetime  # when the stream stored it: registrations carry no time of their own


class ProjectionError(PlaitError):
    """A message of the event log cannot be projected; the projection stops rather than skip history."""


WRITE_ONCE = ("inputs", "outputs")
"""Columns of executions and node executions that are set once and may be large (a map's whole list): a batch
neither reads them back nor rewrites them, so each stays where PostgreSQL first stored it."""


def _upsert(
    table: str,
    row_type: type[msgspec.Struct],
    key: tuple[str, ...],
    on_conflict: str = "update",
    write_once: tuple[str, ...] = (),
    json_null: tuple[str, ...] = (),
) -> str:
    """An INSERT of many rows of ``row_type``, given as one JSON array of objects (``$1``); on a key conflict it
    updates every column (the ``write_once`` ones only while still NULL), or does nothing.

    One statement per table and batch, not one per row: PostgreSQL types each object's fields as the table's
    columns. A JSON null is a NULL column, except in the ``json_null`` (jsonb) columns, which keep it as JSON.
    """
    columns = row_type.__struct_fields__
    values = ", ".join(f"row->'{c}'" if c in json_null else f"typed.{c}" for c in columns)
    if on_conflict == "nothing":
        action = "NOTHING"
    else:
        action = "UPDATE SET " + ", ".join(
            f"{c} = COALESCE({table}.{c}, EXCLUDED.{c})" if c in write_once else f"{c} = EXCLUDED.{c}"
            for c in columns
            if c not in key
        )
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} "  # noqa: S608  constant fragments (table and column names); values are $n parameters
        f"FROM jsonb_array_elements($1::jsonb) AS row, jsonb_populate_record(NULL::{table}, row) AS typed "
        f"ON CONFLICT ({', '.join(key)}) DO {action}"
    )


def _columns_but_write_once(row_type: type[msgspec.Struct], table: str = "") -> str:
    prefix = f"{table}." if table else ""
    return ", ".join(f"NULL AS {c}" if c in WRITE_ONCE else f"{prefix}{c}" for c in row_type.__struct_fields__)


def _read_by_keys(table: str, row_type: type[msgspec.Struct], keys: tuple[str, ...]) -> str:
    """The rows of ``table`` whose ``keys`` (its primary key) are given as arrays ``$1``, ``$2``...: one index
    look-up per key, whatever the table's statistics say. (With stale ones, for a table that grew since it was
    last analyzed, the planner compared every row with every key.)"""
    arrays = ", ".join(f"${i}::text[]" for i in range(1, len(keys) + 1))
    match = " AND ".join(f"stored.{key} = wanted.{key}" for key in keys)
    return (
        f"SELECT {_columns_but_write_once(row_type, 'found')} FROM unnest({arrays}) AS wanted({', '.join(keys)}) "  # noqa: S608  constant fragments (table and column names); values are $n parameters
        f"CROSS JOIN LATERAL (SELECT * FROM {table} AS stored WHERE {match} LIMIT 1) AS found"
    )


_EXECUTION_KEY = ("project", "domain", "execution_id")
_NODE_KEY = (*_EXECUTION_KEY, "node_id")
_ATTEMPT_KEY = ("project", "domain", "attempt_id")
_WRITE_EXECUTION = _upsert("executions", ExecutionRow, _EXECUTION_KEY, write_once=WRITE_ONCE)
_WRITE_NODE = _upsert("node_executions", NodeRow, _NODE_KEY, write_once=WRITE_ONCE)
_WRITE_ATTEMPT = _upsert("attempts", AttemptRow, _ATTEMPT_KEY)
# Registrations are immutable: the first one of a name and version stands.
_WRITE_REGISTRATION = _upsert(
    "registry_entities", RegistryRow, ("kind", "project", "domain", "name", "version"), on_conflict="nothing"
)

_WRITE_LAUNCHED_WORKFLOW = _upsert(
    "launched_workflows", LaunchedWorkflowRow, ("project", "domain", "name", "version"), on_conflict="nothing"
)
# A value is its content: stored once, whoever met it first.
_WRITE_VALUE = _upsert("lineage_values", ValueRow, ("hash",), on_conflict="nothing", json_null=("value",))
_WRITE_ARTIFACT = _upsert("lineage_artifacts", ArtifactRow, ("project", "domain", "artifact_id"))
_WRITE_USE = _upsert("lineage_uses", UseRow, (*_NODE_KEY, "name"))
_WRITE_CACHE_ENTRY = _upsert("cache_entries", CacheEntryRow, ("project", "domain", "cache_key"))
_DELETE_CACHE_ENTRY = "DELETE FROM cache_entries WHERE project = $1 AND domain = $2 AND cache_key = $3"

_READ_EXECUTIONS = _read_by_keys("executions", ExecutionRow, _EXECUTION_KEY)
_READ_NODES = _read_by_keys("node_executions", NodeRow, _NODE_KEY)
_READ_ALL_NODES = f"""
SELECT {_columns_but_write_once(NodeRow)} FROM node_executions
WHERE (project, domain, execution_id) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
"""  # noqa: S608  constant fragments (table and column names); values are $n parameters
_READ_ATTEMPTS = _read_by_keys("attempts", AttemptRow, _ATTEMPT_KEY)
_READ_WORKFLOWS = """
SELECT project, domain, name, version, spec FROM launched_workflows
WHERE (project, domain, name, version) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]))
"""

# The artifacts of node outputs that a batch's events read, made in earlier batches.
_READ_PRODUCED = f"""
SELECT found.project, found.domain, found.execution_id, found.node_id, found.name, found.artifact_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS wanted(project, domain, execution_id, node_id)
CROSS JOIN LATERAL (
    SELECT * FROM lineage_artifacts AS stored
    WHERE stored.project = wanted.project AND stored.domain = wanted.domain
        AND stored.execution_id = wanted.execution_id AND stored.node_id = wanted.node_id
        AND stored.producer IN {tuple(NODE_PRODUCERS)}
) AS found
"""  # noqa: S608  constant fragments (table and column names); values are $n parameters

_READ_OFFSET = "SELECT sequence FROM projection_offsets WHERE projection = $1"
_WRITE_OFFSET = """
INSERT INTO projection_offsets (projection, sequence) VALUES ($1, $2)
ON CONFLICT (projection) DO UPDATE SET sequence = EXCLUDED.sequence
"""


async def stored_offset(connection: Connection) -> int:
    """The last stream sequence the projection applied (0 before any)."""
    offset: int | None = await connection.fetchval(_READ_OFFSET, PROJECTION)
    return offset or 0


KeepAside = Callable[[StoredMessage, str], Awaitable[None]]
"""Records that a message cannot be projected, and why (a quarantine entry): the projection goes on past it."""

MESSAGE_ERRORS = (
    *UNREADABLE,
    RecursionError,
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
"""What one message may cause, unlike a lost connection: it does not decode (or is nested deeper than msgspec reads
or writes: any client of a project may publish one on its own subjects), its events do not fit its execution's
rows, or PostgreSQL refuses its values."""


def keeping_aside(quarantine: Quarantine) -> KeepAside:
    """Keep a message of the event stream aside in ``quarantine``."""

    async def keep(message: StoredMessage, reason: str) -> None:
        await quarantine.keep(subjects.EVENTS_STREAM, message.sequence, message.subject, len(message.data), reason)

    return keep


async def apply_batch(
    connection: Connection,
    messages: Sequence[StoredMessage],
    known: KnownWorkflows | None = None,
    keep_aside: KeepAside | None = None,
) -> int:
    """Apply ``messages`` and the offset they reach in one transaction; returns the new offset.

    Messages at or below the stored offset are skipped. The commit notifies ``plait_catalog`` with
    the new offset, for readers waiting to see their own writes.

    Without ``keep_aside``, a message that cannot be projected raises ``ProjectionError`` and nothing of the
    batch is stored. With it, a message that does not decode is kept aside and skipped; and when the batch
    fails for another reason of its own (``MESSAGE_ERRORS``), its messages are applied one by one, and the one
    that fails is kept aside with the error as its reason, and the offset moves past it.
    """
    known = known if known is not None else KnownWorkflows()
    if keep_aside is None:
        return await _apply_fresh(connection, messages, known, None)
    try:
        return await _apply_fresh(connection, messages, known, keep_aside)
    except MESSAGE_ERRORS as exc:
        _log.warning("batch_failed_applying_one_by_one", messages=len(messages), error=_reason(exc))
    offset = 0
    for message in sorted(messages, key=lambda m: m.sequence):
        try:
            offset = await _apply_fresh(connection, [message], known, keep_aside)
        except MESSAGE_ERRORS as exc:
            await keep_aside(message, _reason(exc))
            offset = await _advance(connection, message.sequence)
    return offset


async def apply_again(
    connection: Connection, read: Callable[[], Awaitable[Sequence[StoredMessage]]], retried: set[int]
) -> None:
    """Apply a quarantined message's subject once more, in order, from its start up to the offset, without moving
    the offset: applying a subject's history again gives its rows as projecting it in order would. The subject is
    ``read`` once the offset is locked, so the leader cannot project a later record of it in between (the replay
    would apply a prefix of its history over rows that hold its end: a cleared cache entry back). A message that
    does not decode is skipped, as it was when projected, unless it is one of the ``retried`` sequences: then, as
    when another cannot be applied, it raises ``ProjectionError`` or one of ``MESSAGE_ERRORS`` and nothing
    changes."""
    async with connection.transaction():
        offset: int = await connection.fetchval(_READ_OFFSET + " FOR UPDATE", PROJECTION) or 0
        messages = await read()
        records: list[tuple[StoredMessage, Record | None]] = []
        for message in sorted((m for m in messages if m.sequence <= offset), key=lambda m: m.sequence):
            try:
                records.append((message, _decode(message)))
            except ProjectionError:
                if message.sequence in retried:
                    raise
        await _apply_records(connection, records, KnownWorkflows())


async def _apply_fresh(
    connection: Connection, messages: Sequence[StoredMessage], known: KnownWorkflows, keep_aside: KeepAside | None
) -> int:
    async with connection.transaction():
        offset: int = await connection.fetchval(_READ_OFFSET + " FOR UPDATE", PROJECTION) or 0
        fresh = sorted((m for m in messages if m.sequence > offset), key=lambda m: m.sequence)
        if not fresh:
            return offset
        records: list[tuple[StoredMessage, Record | None]] = []
        for message in fresh:
            try:
                records.append((message, _decode(message)))
            except ProjectionError as exc:
                if keep_aside is None:
                    raise
                await keep_aside(message, str(exc))
        await _apply_records(connection, records, known)
        offset = fresh[-1].sequence
        await _write_offset(connection, offset)
    return offset


async def _apply_records(
    connection: Connection, records: list[tuple[StoredMessage, Record | None]], known: KnownWorkflows
) -> None:
    decisions = {m.sequence: (rows.execution_key(m.subject, r), r) for m, r in records if isinstance(r, Decision)}
    batch = await _load(connection, decisions.values())
    workflows = await _load_workflows(connection, batch.executions.values(), known)
    produced = await _load_produced(connection, lineage_rows.producers_to_load(workflows, list(decisions.values())))
    lineage = Lineage(known=known, workflows=workflows, produced=produced)
    cache = CacheEntries()
    for message, record in records:
        if isinstance(record, Decision):
            execution = decisions[message.sequence][0]
            rows.apply_decision(batch, execution, record, message.sequence)
            lineage_rows.apply_decision(lineage, execution, record)
        elif isinstance(record, Registration):
            rows.register(
                batch, record, message.sequence, message.stored_at
            )  # its subject's, as _check_placed made sure
        elif record is not None:
            cache_rows.apply_record(cache, record, message.sequence)
    await _write(connection, batch, lineage, cache)


async def _advance(connection: Connection, sequence: int) -> int:
    """Move the offset up to ``sequence`` (a message kept aside); returns the offset."""
    async with connection.transaction():
        offset: int = await connection.fetchval(_READ_OFFSET + " FOR UPDATE", PROJECTION) or 0
        if sequence > offset:
            offset = sequence
            await _write_offset(connection, offset)
    return offset


async def _write_offset(connection: Connection, offset: int) -> None:
    await connection.execute(_WRITE_OFFSET, PROJECTION, offset)
    await connection.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(offset))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _decode(message: StoredMessage) -> Record | None:
    """The record a message holds: None for a subject the projection does not follow. Raises ``ProjectionError``
    for one that does not decode, or whose record belongs on another subject."""
    record = _read(message)
    _check_placed(message, record)
    return record


def _read(message: StoredMessage) -> Record | None:
    try:
        if message.subject.startswith(_DECISIONS):
            subjects.tenant_of_subject(message.subject)  # else its execution cannot be told from another's
            return codec.decision_decoder.decode(message.data)
        if message.subject.startswith(_REGISTRATIONS):
            registration: Registration = registration_decoder.decode(message.data)
            return registration
        if message.subject.startswith(_CACHE) and message.subject.endswith(_CACHE_ENTRY):
            entry: CacheEntryRecord = entry_decoder.decode(message.data)
            return entry
    except RecursionError as exc:
        raise ProjectionError(
            f"message {message.sequence} on {message.subject} cannot be decoded: it is nested too deeply"
        ) from exc
    except UNREADABLE as exc:
        raise ProjectionError(f"message {message.sequence} on {message.subject} cannot be decoded: {exc}") from exc
    return None


def _check_placed(message: StoredMessage, record: Record | None) -> None:
    """Refuse a registration or cache record stored on another subject than the one it names: the broker lets a
    client publish on its own project's subjects only, and what it publishes there names any project, entity or key
    it likes."""
    if isinstance(record, Registration):
        spec = record.spec
        what = f"{kind_of(record)} '{spec.name}' version {spec.version} of {record.project}/{record.domain}"
        expected = _subject_or_none(registration_subject, record)
    elif isinstance(record, CacheFilled | CacheCleared):
        what = f"cache key '{record.cache_key}' of {record.project}/{record.domain}"
        expected = _subject_or_none(subjects.cache_entry_subject, record.project, record.domain, record.cache_key)
    else:
        return
    if expected != message.subject or subjects.tenant_of_subject(message.subject) != (record.project, record.domain):
        raise ProjectionError(f"message {message.sequence} on {message.subject} holds a record of {what}")


def _subject_or_none(subject_of: Callable[..., str], *names: Any) -> str | None:
    try:
        return subject_of(*names)
    except ValueError:  # a name no subject can hold
        return None


async def _load(connection: Connection, decisions: Iterable[tuple[rows.ExecutionKey, Decision]]) -> Rows:
    """The stored rows that ``decisions`` (each with its execution's key) change."""
    keys = rows.keys_touched(decisions)
    batch = Rows()
    for record in await connection.fetch(_READ_EXECUTIONS, *_columns(keys.executions, 3)):
        execution = ExecutionRow(**dict(record))
        batch.executions[execution.project, execution.domain, execution.execution_id] = execution
    # Two queries: one with an OR of both conditions is a sequential scan of the whole table.
    node_records = await connection.fetch(_READ_NODES, *_columns(keys.nodes, 4))
    if keys.all_nodes_of:
        node_records += await connection.fetch(_READ_ALL_NODES, *_columns(keys.all_nodes_of, 3))
    for record in node_records:
        node = NodeRow(**dict(record))
        batch.nodes[node.project, node.domain, node.execution_id, node.node_id] = node
    for record in await connection.fetch(_READ_ATTEMPTS, *_columns(keys.attempts, 3)):
        attempt = AttemptRow(**dict(record))
        batch.attempts[attempt.project, attempt.domain, attempt.attempt_id] = attempt
    return batch


def _columns(keys: Iterable[tuple[str, ...]], width: int) -> list[list[str]]:
    """Keys as one list per column, the arrays a read by keys takes."""
    return [list(column) for column in zip(*keys, strict=True)] or [[] for _ in range(width)]


async def _load_workflows(
    connection: Connection, executions: Iterable[ExecutionRow], known: KnownWorkflows
) -> dict[rows.ExecutionKey, WorkflowSpec]:
    """The workflow specs of executions launched in earlier batches, by execution id; read from the database
    only when ``known`` does not have them yet."""
    workflows: dict[rows.ExecutionKey, WorkflowSpec] = {}
    unknown: dict[WorkflowKey, list[rows.ExecutionKey]] = {}
    for execution in executions:
        key = (execution.project, execution.domain, execution.workflow_name, execution.workflow_version)
        spec = known.get(key)
        placed = (execution.project, execution.domain, execution.execution_id)
        if spec is not None:
            workflows[placed] = spec
        else:
            unknown.setdefault(key, []).append(placed)
    if not unknown:
        return workflows
    for record in await connection.fetch(_READ_WORKFLOWS, *(list(column) for column in zip(*unknown, strict=True))):
        key = (record["project"], record["domain"], record["name"], record["version"])
        spec = msgspec.convert(record["spec"], WorkflowSpec)
        known.add(key, spec)
        for placed in unknown[key]:
            workflows[placed] = spec
    return workflows


async def _load_produced(
    connection: Connection, nodes: set[NodeKey]
) -> dict[rows.ExecutionKey, dict[tuple[str, str], str]]:
    """The output artifacts of ``nodes``, by execution, then (node, output)."""
    produced: dict[rows.ExecutionKey, dict[tuple[str, str], str]] = {}
    if nodes:
        for project, domain, execution_id, node, name, artifact in await connection.fetch(
            _READ_PRODUCED, *_columns(nodes, 4)
        ):
            produced.setdefault((project, domain, execution_id), {})[node, name] = artifact
    return produced


async def _write(connection: Connection, batch: Rows, lineage: Lineage, cache: CacheEntries) -> None:
    """Write every changed row, parents before children."""
    filled = [row for row in cache.changed.values() if row is not None]
    writes: list[tuple[str, Any]] = [
        (_WRITE_REGISTRATION, batch.registrations),
        (_WRITE_LAUNCHED_WORKFLOW, lineage.launched.values()),
        (_WRITE_EXECUTION, batch.executions.values()),
        (_WRITE_NODE, batch.nodes.values()),
        (_WRITE_ATTEMPT, batch.attempts.values()),
        (_WRITE_VALUE, lineage.values()),
        (_WRITE_ARTIFACT, lineage.artifacts()),
        (_WRITE_USE, lineage.uses()),
        (_WRITE_CACHE_ENTRY, filled),
    ]
    for statement, table_rows in writes:
        if table_rows:
            await connection.execute(statement, list(table_rows))
    if cleared := [key for key, row in cache.changed.items() if row is None]:
        await connection.executemany(_DELETE_CACHE_ENTRY, cleared)


async def clear(connection: Connection) -> None:
    """Empty every projected table and set the offset back to 0: the projection starts over."""
    for table in PROJECTED_TABLES:
        await connection.execute(f"DELETE FROM {table}")  # noqa: S608  constant fragments (table and column names); values are $n parameters
    await connection.execute(_WRITE_OFFSET, PROJECTION, 0)


async def row_counts(connection: Connection) -> dict[str, int]:
    """The number of rows of each projected table."""
    counts = " UNION ALL ".join(f"SELECT '{table}', count(*) FROM {table}" for table in PROJECTED_TABLES)  # noqa: S608  constant fragments (table and column names); values are $n parameters
    return {table: count for table, count in await connection.fetch(counts)}
