"""Catalog rows written straight into PostgreSQL, for the query tests: two chained executions, the cache, the
registry. (Projecting such rows from the log is tested with the projection.)

Execution A runs ``pipeline(x=3)``: double 3 → 6, increment 6 → 7. Execution B runs ``pipeline(x=7)`` on
A's output: the same artifact 7, then double → 14, increment → 15.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from plait.core.ids import artifact_hash
from plait_catalog.db import Connection

PROJECT, DOMAIN = "flows", "development"
T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
WORKFLOW, DOUBLE, INCREMENT = "tests.pipeline", "tests.double", "tests.increment"
INT = {"type": "primitive", "name": "int"}

H3, H6, H7, H14, H15 = (artifact_hash(value) for value in (3, 6, 7, 14, 15))
CHAIN = {"A": (3, 6, 7), "B": (7, 14, 15)}  # execution: (input, doubled, result)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def insert_chain(connection: Connection, project: str = PROJECT, domain: str = DOMAIN) -> None:
    """Executions A and B with their nodes, artifacts and lineage edges."""
    for offset, (execution_id, (x, doubled, result)) in enumerate(CHAIN.items()):
        await connection.execute(
            """INSERT INTO executions (execution_id, project, domain, workflow_name, workflow_version, status, inputs,
                   outputs, launched_by, launched_at, finished_at, last_sequence)
               VALUES ($1, $2, $3, $4, 'w1', 'succeeded', $5, $6, 'tester', $7, $8, 1)""",
            execution_id,
            project,
            domain,
            WORKFLOW,
            {"x": x},
            {"result": result},
            at(10 * offset),
            at(10 * offset + 5),
        )
        for position, (node, task) in enumerate((("double", DOUBLE), ("increment", INCREMENT))):
            await connection.execute(
                """INSERT INTO node_executions (project, domain, execution_id, node_id, position, task_name,
                       task_version, status)
                   VALUES ($1, $2, $3, $4, $5, $6, 't1', 'succeeded')""",
                project,
                domain,
                execution_id,
                node,
                position,
                task,
            )
        for value in (x, doubled, result):
            await connection.execute(
                """INSERT INTO artifacts (hash, type, value, size) VALUES ($1, $2, $3, $4)
                   ON CONFLICT DO NOTHING""",
                artifact_hash(value),
                INT,
                value,
                len(str(value)),
            )
        edges = [
            (x, "", "input", "x"),
            (x, "double", "input", "x"),
            (doubled, "double", "output", "result"),
            (doubled, "increment", "input", "x"),
            (result, "increment", "output", "result"),
            (result, "", "output", "result"),
        ]
        await connection.executemany(
            """INSERT INTO lineage_edges (artifact_hash, project, domain, execution_id, node_id, direction, name)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            [
                (artifact_hash(value), project, domain, execution_id, node, way, name)
                for value, node, way, name in edges
            ],
        )


CACHE_KEYS = {
    "k-double-3": (DOUBLE, 6, "A", 1),
    "k-increment-6": (INCREMENT, 7, "A", 2),
    "k-double-7": (DOUBLE, 14, "B", 3),
}


async def insert_cache(connection: Connection, project: str = PROJECT, domain: str = DOMAIN) -> None:
    """Three entries, created in the order of ``CACHE_KEYS``."""
    for key, (task, result, execution_id, second) in CACHE_KEYS.items():
        node = task.rsplit(".", 1)[-1]
        await connection.execute(
            """INSERT INTO cache_entries (project, domain, cache_key, task_name, task_version, outputs, execution_id,
                   node_id, attempt_id, created_at, sequence)
               VALUES ($1, $2, $3, $4, 't1', $5, $6, $7, $8, $9, $10)""",
            project,
            domain,
            key,
            task,
            {"result": result},
            execution_id,
            node,
            f"{execution_id}/{node}/1",
            at(second),
            second,
        )


REGISTERED: list[tuple[str, str, str, dict[str, Any]]] = [
    ("task", DOUBLE, "d1", {"name": DOUBLE, "version": "d1"}),
    ("task", INCREMENT, "i1", {"name": INCREMENT, "version": "i1"}),
    ("task", DOUBLE, "d2", {"name": DOUBLE, "version": "d2"}),
    ("workflow", WORKFLOW, "w1", {"name": WORKFLOW, "version": "w1"}),
    ("task", DOUBLE, "d3", {"name": DOUBLE, "version": "d3"}),
    ("launch_plan", "daily", "p1", {"name": "daily", "version": "p1", "workflow": WORKFLOW}),
]


async def insert_registry(connection: Connection) -> None:
    """``REGISTERED``, in that order (one second and one stream sequence apart)."""
    for sequence, (kind, name, version, spec) in enumerate(REGISTERED, start=1):
        await connection.execute(
            """INSERT INTO registry_entities (kind, project, domain, name, version, spec, registered_at, sequence)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            kind,
            PROJECT,
            DOMAIN,
            name,
            version,
            spec,
            at(100 + sequence),
            sequence,
        )


async def insert_all(connection: Connection) -> None:
    await insert_chain(connection)
    await insert_cache(connection)
    await insert_registry(connection)
