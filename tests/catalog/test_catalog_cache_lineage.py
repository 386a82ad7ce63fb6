"""The catalog's projections of cache look-ups and hits, lineage and the cache log, against real servers.

Decisions are made by the pure core (``decide``) as a scheduler makes them, cache fills appended on the
key's entry subject as the scheduler appends them.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from plait.adapters.cachelog import CacheLog
from plait.core.cachelog import CacheCleared, CacheReleased, CacheReserved, CacheWaiter
from plait.core.commands import LaunchExecution, ResolvedLaunch
from plait.core.ids import artifact_hash, attempt_id
from plait_catalog.migrations import migrate
from plait_catalog.projection import apply_batch
from tests.helpers.caching_log import (
    INT,
    CachingLog,
    cached_chain,
    dump_all,
    fresh_projection_all,
    optional,
    square,
)
from tests.helpers.catalog_log import DOMAIN, PROJECT, EventLog, read_stream


async def test_cache_lookup_then_hit(log: EventLog, pg: asyncpg.Connection) -> None:
    caching = CachingLog(log)
    await caching.computed("first", 4)
    key = await caching.launch("second", 4)
    looking = log.states["second"].last_sequence
    await migrate(pg)
    await apply_batch(pg, await read_stream(log.js))

    node = await pg.fetchrow("SELECT * FROM node_executions WHERE execution_id = 'second' AND node_id = 'square'")
    assert (node["status"], node["cache_key"], node["inputs"], node["cached_from"]) == (
        "cache_lookup",
        key,
        {"x": 4},
        "",
    )
    computed = await pg.fetchrow("SELECT * FROM node_executions WHERE execution_id = 'first' AND node_id = 'square'")
    assert (computed["status"], computed["cache_key"], computed["cached_from"]) == ("succeeded", key, "")
    assert await pg.fetchval("SELECT last_sequence FROM executions WHERE execution_id = 'second'") == looking

    await caching.lookup("second", "hit", outputs={"result": 16}, source_execution="first", source_node="square")
    await apply_batch(pg, await read_stream(log.js))
    hit = await pg.fetchrow("SELECT * FROM node_executions WHERE execution_id = 'second' AND node_id = 'square'")
    assert (hit["status"], hit["outputs"], hit["cached_from"], hit["cache_key"]) == (
        "succeeded",
        {"result": 16},
        "first/square",
        key,
    )
    assert hit["finished_at"] == log.now
    assert hit["queued_at"] is None and hit["started_at"] is None
    assert await pg.fetchval("SELECT count(*) FROM attempts WHERE execution_id = 'second'") == 1  # add_one only
    assert (
        await pg.fetchval("SELECT status FROM node_executions WHERE execution_id = 'second' AND node_id = 'add_one'")
        == "queued"
    )


async def test_rows_agree_with_the_core_state(log: EventLog, pg: asyncpg.Connection) -> None:
    caching = CachingLog(log)
    await caching.computed("computed", 2, retry=True)
    await caching.hit("reused", 2, source="computed")
    await caching.launch("looking", 5)
    await caching.launch("aborted", 6)
    await log.abort("aborted")
    await migrate(pg)
    await apply_batch(pg, await read_stream(log.js))

    nodes = {(r["execution_id"], r["node_id"]): r for r in await pg.fetch("SELECT * FROM node_executions")}
    for execution_id, state in log.states.items():
        row = await pg.fetchrow("SELECT * FROM executions WHERE execution_id = $1", execution_id)
        assert (row["status"], row["overwrite_cache"]) == (state.status, state.overwrite_cache)
        for node_id, node in state.nodes.items():
            stored = nodes[execution_id, node_id]
            assert (
                stored["status"],
                stored["cache_key"],
                stored["cached_from"],
                stored["inputs"],
                stored["outputs"],
            ) == (
                node.status,
                node.cache_key,
                node.cached_from,
                node.inputs,
                node.outputs,
            )
    assert nodes["aborted", "square"]["status"] == "aborted"  # it was still looking up
    assert nodes["looking", "square"]["status"] == "cache_lookup"


async def test_overwrite_cache_is_projected(log: EventLog, pg: asyncpg.Connection) -> None:
    launch = LaunchExecution(
        command_id="launch:over",
        execution_id="over",
        project=PROJECT,
        domain=DOMAIN,
        workflow=cached_chain.name,
        version=cached_chain.spec.version,
        inputs={"x": 3},
        overwrite_cache=True,
    )
    await log.command("over", ResolvedLaunch(command=launch, workflow=cached_chain.spec))
    await migrate(pg)
    await apply_batch(pg, await read_stream(log.js))
    assert await pg.fetchval("SELECT overwrite_cache FROM executions WHERE execution_id = 'over'") is True
    key = log.states["over"].nodes["square"].cache_key
    node = await pg.fetchrow("SELECT status, cache_key FROM node_executions WHERE node_id = 'square'")
    assert (node["status"], node["cache_key"]) == ("queued", key) and key


async def test_lineage_crosses_executions(log: EventLog, pg: asyncpg.Connection) -> None:
    caching = CachingLog(log)
    await caching.computed("upstream", 3)  # outputs 10
    await caching.computed("downstream", 10)  # its input is upstream's output
    await migrate(pg)
    await apply_batch(pg, await read_stream(log.js))

    edges = {
        (r["execution_id"], r["node_id"], r["direction"], r["name"]): r["artifact_hash"]
        for r in await pg.fetch("SELECT * FROM lineage_edges")
    }
    ten = artifact_hash(10)
    assert edges["upstream", "add_one", "output", "result"] == ten
    assert edges["upstream", "", "output", "result"] == ten
    assert edges["downstream", "", "input", "x"] == ten
    assert edges["downstream", "square", "input", "x"] == ten
    assert edges["upstream", "square", "input", "x"] == artifact_hash(3)
    assert edges["upstream", "square", "output", "result"] == artifact_hash(9)
    assert len(edges) == 2 * (1 + 2 + 2 + 1)  # per execution: its input, each node's input and output, its output

    artifact = await pg.fetchrow("SELECT * FROM artifacts WHERE hash = $1", ten)
    assert (artifact["value"], artifact["size"], artifact["type"]) == (10, 2, INT)
    assert await pg.fetchval("SELECT count(*) FROM artifacts") == len({3, 9, 10, 100, 101})

    # walking upstream from the downstream execution's input finds the node that computed it
    writers = await pg.fetch(
        """
        SELECT w.execution_id, w.node_id FROM lineage_edges AS r
        JOIN lineage_edges AS w ON w.artifact_hash = r.artifact_hash AND w.direction = 'output' AND w.node_id <> ''
        WHERE r.execution_id = 'downstream' AND r.node_id = '' AND r.direction = 'input'
        """
    )
    assert [(w["execution_id"], w["node_id"]) for w in writers] == [("upstream", "add_one")]


async def test_lineage_of_a_cache_hit_and_of_executions_launched_in_earlier_batches(
    log: EventLog, pg: asyncpg.Connection, postgres_server: Any
) -> None:
    caching = CachingLog(log)
    await caching.computed("source", 7)
    await caching.hit("hit", 7, source="source")
    await migrate(pg)
    for message in await read_stream(log.js):  # one message per batch: every type comes from an earlier launch
        await apply_batch(pg, [message])

    hit_edges = await pg.fetch(
        "SELECT node_id, direction, name, artifact_hash FROM lineage_edges WHERE execution_id = 'hit' "
        "ORDER BY node_id, direction"
    )
    assert [(e["node_id"], e["direction"], e["artifact_hash"]) for e in hit_edges] == [
        ("", "input", artifact_hash(7)),
        ("", "output", artifact_hash(50)),
        ("add_one", "input", artifact_hash(49)),
        ("add_one", "output", artifact_hash(50)),
        ("square", "input", artifact_hash(7)),
        ("square", "output", artifact_hash(49)),
    ]
    types = {r["hash"]: r["type"] for r in await pg.fetch("SELECT hash, type FROM artifacts")}
    assert list(types.values()) == [INT] * len(types)
    assert await dump_all(pg) == await fresh_projection_all(postgres_server, log.js)


async def test_cache_entries_follow_the_cache_log(log: EventLog, pg: asyncpg.Connection) -> None:
    caching = CachingLog(log)
    await caching.computed("maker", 6)
    key = log.states["maker"].nodes["square"].cache_key
    entry = CacheLog(log.js, PROJECT, DOMAIN, key)
    await migrate(pg)
    await apply_batch(pg, await read_stream(log.js))

    row = dict(await pg.fetchrow("SELECT * FROM cache_entries"))
    filled_at = (await entry.last())[0]
    assert row == {
        "project": PROJECT,
        "domain": DOMAIN,
        "cache_key": key,
        "task_name": square.name,
        "task_version": square.spec.version,
        "outputs": {"result": 36},
        "execution_id": "maker",
        "node_id": "square",
        "attempt_id": attempt_id("maker", "square", 1),
        "created_at": row["created_at"],
        "sequence": filled_at,
    }
    assert row["created_at"] is not None

    # waiters, reservations and releases change no row, and do not stop the projection
    await entry.add_waiter(CacheWaiter(execution_id="other", node="square", round=1, at=log.now))
    await entry.append(CacheCleared(project=PROJECT, domain=DOMAIN, cache_key=key, cleared_by="tester", at=log.now))
    await entry.append(CacheReserved(execution_id="again", node="square", at=log.now, until=log.at(999)))
    last = await entry.append(CacheReleased(execution_id="again", node="square", reason="failed", at=log.now))
    assert await apply_batch(pg, await read_stream(log.js)) == last
    assert await pg.fetchval("SELECT count(*) FROM cache_entries") == 0

    refilled = await entry.append(caching.filled("maker", key, 36))
    await apply_batch(pg, await read_stream(log.js))
    assert await pg.fetchval("SELECT sequence FROM cache_entries WHERE cache_key = $1", key) == refilled


async def test_fill_and_clear_in_one_batch(log: EventLog, pg: asyncpg.Connection) -> None:
    caching = CachingLog(log)
    entry = CacheLog(log.js, PROJECT, DOMAIN, "k1")
    await entry.append(caching.filled("e", "k1", 1))
    await entry.append(CacheCleared(project=PROJECT, domain=DOMAIN, cache_key="k1", cleared_by="me", at=log.now))
    other = CacheLog(log.js, PROJECT, DOMAIN, "k2")
    await other.append(CacheCleared(project=PROJECT, domain=DOMAIN, cache_key="k2", cleared_by="me", at=log.now))
    await other.append(caching.filled("e", "k2", 2))
    await migrate(pg)
    await apply_batch(pg, await read_stream(log.js))
    assert [r["cache_key"] for r in await pg.fetch("SELECT cache_key FROM cache_entries")] == ["k2"]


async def test_a_none_value_is_an_artifact_stored_inline(log: EventLog, pg: asyncpg.Connection) -> None:
    launch = LaunchExecution(
        command_id="launch:none",
        execution_id="none",
        project=PROJECT,
        domain=DOMAIN,
        workflow=optional.name,
        version=optional.spec.version,
        inputs={"x": 1},
    )
    await log.command("none", ResolvedLaunch(command=launch, workflow=optional.spec))
    await log.start("none", "nothing")
    await log.finish("none", "nothing", outputs={"result": None})
    await migrate(pg)
    await apply_batch(pg, await read_stream(log.js))
    stored = await pg.fetchrow(
        "SELECT value IS NULL AS missing, value, size, type FROM artifacts WHERE hash = $1", artifact_hash(None)
    )
    assert (stored["missing"], stored["value"], stored["size"]) == (False, None, len(b"null"))
    assert stored["type"] == {"type": "optional", "inner": INT}
