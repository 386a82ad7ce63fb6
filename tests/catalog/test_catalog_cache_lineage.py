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
from plait.core.ids import attempt_id, value_hash
from plait.core.lineage import artifact_id
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


async def artifacts_of(pg: asyncpg.Connection, execution_id: str) -> dict[tuple[str, str], asyncpg.Record]:
    """The execution's artifacts by (node, name)."""
    rows = await pg.fetch("SELECT * FROM lineage_artifacts WHERE execution_id = $1", execution_id)
    return {(r["node_id"], r["name"]): r for r in rows}


async def uses_of(pg: asyncpg.Connection, execution_id: str) -> dict[tuple[str, str], str]:
    """What each input of the execution read: (node, input) → artifact id."""
    rows = await pg.fetch("SELECT * FROM lineage_uses WHERE execution_id = $1", execution_id)
    return {(r["node_id"], r["name"]): r["artifact_id"] for r in rows}


async def test_equal_values_of_two_executions_are_not_linked(log: EventLog, pg: asyncpg.Connection) -> None:
    """``downstream`` is launched with ``upstream``'s output 10: equal values, two artifacts, no shared row."""
    caching = CachingLog(log)
    await caching.computed("upstream", 3)  # outputs 10
    await caching.computed("downstream", 10)
    await migrate(pg)
    await apply_batch(pg, await read_stream(log.js))

    up, down = await artifacts_of(pg, "upstream"), await artifacts_of(pg, "downstream")
    ten = value_hash(10)
    assert up["add_one", "result"]["value_hash"] == down["", "x"]["value_hash"] == ten
    assert up["add_one", "result"]["artifact_id"] != down["", "x"]["artifact_id"]
    assert down["", "x"]["producer"] == "launch"
    first = attempt_id("upstream", "square", 1)
    assert (up["square", "result"]["producer"], up["square", "result"]["attempt_id"]) == ("attempt", first)
    assert up["square", "result"]["artifact_id"] == artifact_id("upstream", "square", first, "result")
    assert (up["square", "result"]["type"], up["square", "result"]["value_hash"]) == (INT, value_hash(9))

    assert await uses_of(pg, "upstream") == {
        ("square", "x"): up["", "x"]["artifact_id"],
        ("add_one", "x"): up["square", "result"]["artifact_id"],
        ("", "result"): up["add_one", "result"]["artifact_id"],
    }
    no_artifact_read_across = await pg.fetchval(
        """SELECT count(*) FROM lineage_uses AS u JOIN lineage_artifacts AS a USING (project, domain, artifact_id)
           WHERE u.execution_id <> a.execution_id"""
    )
    assert no_artifact_read_across == 0
    stored = await pg.fetchrow("SELECT * FROM lineage_values WHERE hash = $1", ten)
    assert (stored["value"], stored["size"]) == (10, 2)
    assert await pg.fetchval("SELECT count(*) FROM lineage_values") == len({3, 9, 10, 100, 101})


async def test_lineage_of_a_cache_hit_and_of_executions_launched_in_earlier_batches(
    log: EventLog, pg: asyncpg.Connection, postgres_server: Any
) -> None:
    caching = CachingLog(log)
    await caching.computed("source", 7)
    await caching.hit("hit", 7, source="source")
    await migrate(pg)
    for message in await read_stream(log.js):  # one message per batch: every type comes from an earlier launch
        await apply_batch(pg, [message])

    hit = await artifacts_of(pg, "hit")
    cached = hit["square", "result"]
    assert (cached["producer"], cached["source_execution"], cached["source_node"], cached["attempt_id"]) == (
        "cache",
        "source",
        "square",
        "",
    )
    assert cached["artifact_id"] == artifact_id("hit", "square", "cache:source/square", "result")
    assert await uses_of(pg, "hit") == {
        ("square", "x"): hit["", "x"]["artifact_id"],
        ("add_one", "x"): cached["artifact_id"],  # read in a later batch than the hit was made
        ("", "result"): hit["add_one", "result"]["artifact_id"],
    }
    assert {r["type"]["name"] for r in hit.values()} == {"int"}
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
        "SELECT value IS NULL AS missing, value, size FROM lineage_values WHERE hash = $1", value_hash(None)
    )
    assert (stored["missing"], stored["value"], stored["size"]) == (False, None, len(b"null"))
    [made] = await pg.fetch("SELECT type FROM lineage_artifacts WHERE node_id = 'nothing'")
    assert made["type"] == {"type": "optional", "inner": INT}
