"""Catalog rows written straight into PostgreSQL, for the query tests: three executions, the cache, the registry.
(Projecting such rows from the log is tested with the projection.)

Execution A runs ``pipeline(x=3)``: double 3 → 6, increment 6 → 7 (its second attempt). Execution B runs
``pipeline(x=7)``: launched with the value A made, but not with A's artifact, so lineage does not link them
(``same_value`` does): double → 14, increment → 15. Execution C runs ``pipeline(x=3)`` with ``double`` a cache hit
of A's: lineage crosses from C to A through the cache, and only there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from plait.core.ids import attempt_id, value_hash
from plait.core.lineage import artifact_id, launch_artifact_id
from plait_catalog.db import Connection

PROJECT, DOMAIN = "flows", "development"
T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
WORKFLOW, DOUBLE, INCREMENT = "tests.pipeline", "tests.double", "tests.increment"
INT = {"type": "primitive", "name": "int"}

H3, H6, H7, H14, H15 = (value_hash(value) for value in (3, 6, 7, 14, 15))
CHAIN = {"A": (3, 6, 7), "B": (7, 14, 15), "C": (3, 6, 7)}  # execution: (input, doubled, result)
MADE_BY = {  # (execution, node): what made its output: an attempt id, or a cache hit of another execution's node
    ("A", "double"): attempt_id("A", "double", 1),
    ("A", "increment"): attempt_id("A", "increment", 2),
    ("B", "double"): attempt_id("B", "double", 1),
    ("B", "increment"): attempt_id("B", "increment", 1),
    ("C", "double"): "cache:A/double",
    ("C", "increment"): attempt_id("C", "increment", 1),
}


def artifact(execution_id: str, node: str = "") -> str:
    """The id of the execution's input ``x`` (no node), or of the node's output ``result``."""
    if not node:
        return launch_artifact_id(execution_id, "x")
    return artifact_id(execution_id, node, MADE_BY[execution_id, node], "result")


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def insert_chain(connection: Connection, project: str = PROJECT, domain: str = DOMAIN) -> None:
    """Executions A, B and C with their nodes, artifacts and uses."""
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
        await connection.executemany(
            "INSERT INTO lineage_values (hash, value, size) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [(value_hash(value), value, len(str(value))) for value in (x, doubled, result)],
        )
        made = [("", "x", "launch", "", x, "")] + [
            (node, "result", *_producer(MADE_BY[execution_id, node]), value, MADE_BY[execution_id, node])
            for node, value in (("double", doubled), ("increment", result))
        ]
        await connection.executemany(
            """INSERT INTO lineage_artifacts (project, domain, artifact_id, execution_id, node_id, name, producer,
                   attempt_id, value_hash, type, source_execution, source_node)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
            [
                (
                    project,
                    domain,
                    artifact(execution_id, node),
                    execution_id,
                    node,
                    name,
                    producer,
                    attempt,
                    value_hash(value),
                    INT,
                    *_source(made_by),
                )
                for node, name, producer, attempt, value, made_by in made
            ],
        )
        uses = [("double", "x", ""), ("increment", "x", "double"), ("", "result", "increment")]
        await connection.executemany(
            """INSERT INTO lineage_uses (project, domain, execution_id, node_id, name, artifact_id)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            [(project, domain, execution_id, node, name, artifact(execution_id, read)) for node, name, read in uses],
        )


def _producer(made_by: str) -> tuple[str, str]:
    """(producer, attempt id) of a node output made by ``made_by``."""
    if made_by.startswith("cache:"):
        return "cache", ""
    return "attempt", made_by


def _source(made_by: str) -> tuple[str, str]:
    if not made_by.startswith("cache:"):
        return "", ""
    execution_id, node = made_by.removeprefix("cache:").split("/")
    return execution_id, node


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
