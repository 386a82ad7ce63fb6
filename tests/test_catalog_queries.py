"""Cache, lineage and registry queries of a real catalog over NATS, on rows written into PostgreSQL; and
clearing cache keys through the client against a real stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
import msgspec
import pytest
from nats.aio.client import Client as NATS

from plait.adapters.cachelog import CacheLog
from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient, Client
from plait.core.cachelog import CacheCleared, CacheFilled, CacheReserved
from plait.core.ids import value_hash
from plait.core.lineage import launch_artifact_id
from plait.errors import NotFound
from plait.protocol import subjects
from plait_catalog import CatalogService, db
from plait_catalog.migrations import migrate
from tests.helpers.catalog_rows import DOMAIN, DOUBLE, H7, INCREMENT, PROJECT, WORKFLOW, artifact, insert_all
from tests.helpers.running import running

DEADLINE = 10.0
HERE = {"project": PROJECT, "domain": DOMAIN}


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    connection = await connect(nats_url, "test-catalog-queries")
    await ensure_streams(connection.jetstream())
    yield connection
    await connection.close()


@pytest.fixture
async def catalog(nats_url: str, database_url: str, nc: NATS) -> AsyncIterator[None]:
    """A running catalog replica over a database holding the rows of ``tests.helpers.catalog_rows``."""
    connection = await db.connect(database_url, "test-rows")
    try:
        await migrate(connection)
        await insert_all(connection)
    finally:
        await connection.close()
    async with running(CatalogService(nats_url, database_url, replica="queries").run):
        yield


async def ask(nc: NATS, kind: str, request: dict[str, Any] | bytes) -> dict[str, Any]:
    """The catalog's answer to the query ``kind``, asked on the subject of the request's project and domain (this
    module's when it names none)."""
    named = {} if isinstance(request, bytes) else request
    subject = subjects.catalog_subject(named.get("project", PROJECT), named.get("domain", DOMAIN), kind)
    data = request if isinstance(request, bytes) else msgspec.json.encode(request)
    reply = await nc.request(subject, data, timeout=DEADLINE)
    answer: dict[str, Any] = msgspec.json.decode(reply.data)
    return answer


def ids(graph: dict[str, Any]) -> set[str]:
    return {node["id"] for node in graph["nodes"]}


def edges(graph: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(edge["source"], edge["target"], edge["name"]) for edge in graph["edges"]}


A_X, A_D, A_R = (f"artifact:{artifact(*place)}" for place in (("A",), ("A", "double"), ("A", "increment")))
B_X, B_D, B_R = (f"artifact:{artifact(*place)}" for place in (("B",), ("B", "double"), ("B", "increment")))
C_X, C_D, C_R = (f"artifact:{artifact(*place)}" for place in (("C",), ("C", "double"), ("C", "increment")))


def lineage_request(target: str, **options: Any) -> dict[str, Any]:
    return {**HERE, "target": target.removeprefix("artifact:"), **options}


def executions_in(graph: dict[str, Any]) -> set[str]:
    return {node["execution_id"] for node in graph["nodes"]}


async def test_lineage_upstream_crosses_executions_through_the_cache_only(nc: NATS, catalog: None) -> None:
    """C's ``double`` was a cache hit of A's: walking up from C's result reaches A through it, step by step."""
    one = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(C_R, direction="upstream", depth=1))
    assert one["root"] == C_R
    assert ids(one) == {C_R, "node:C/increment", C_D}
    assert edges(one) == {("node:C/increment", C_R, "result"), (C_D, "node:C/increment", "x")}
    vertices = {node["id"]: node for node in one["nodes"]}
    assert vertices[C_R] == {
        "kind": "artifact",
        "id": C_R,
        "hash": H7,
        "type": "int",
        "preview": "7",
        "size": 1,
        "execution_id": "C",
        "node": "increment",
        "name": "result",
        "producer": "attempt",
        "attempt_id": "C/increment/1",
        "source_execution": "",
        "source_node": "",
    }
    assert (vertices[C_D]["producer"], vertices[C_D]["source_execution"], vertices[C_D]["source_node"]) == (
        "cache",
        "A",
        "double",
    )
    assert vertices["node:C/increment"] == {
        "kind": "node_execution",
        "id": "node:C/increment",
        "execution_id": "C",
        "node": "increment",
        "task": INCREMENT,
        "status": "succeeded",
    }

    two = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(C_R, direction="upstream", depth=2))
    assert ids(two) - ids(one) == {"node:C/double", C_X, A_D}
    assert {(e["source"], e["target"], e["name"], e["kind"]) for e in two["edges"]} >= {
        (A_D, "node:C/double", "result", "cached"),
        (C_X, "node:C/double", "x", "used"),
        ("node:C/double", C_D, "result", "produced"),
    }
    three = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(C_R, direction="upstream", depth=3))
    assert ids(three) - ids(two) == {"execution:C", "node:A/double", A_X}
    four = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(C_R, direction="upstream", depth=4))
    assert ids(four) - ids(three) == {"execution:A"}
    deeper = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(C_R, direction="upstream", depth=10))
    assert (ids(deeper), edges(deeper)) == (ids(four), edges(four))
    assert not deeper["truncated"]
    assert executions_in(deeper) == {"A", "C"}, "B met the same values, but none of these artifacts"

    cut = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(C_R, direction="upstream", depth=4, max_edges=5))
    assert cut["truncated"]
    assert edges(one) <= edges(cut) <= edges(four) and len(cut["edges"]) == 5


async def test_lineage_downstream_and_both(nc: NATS, catalog: None) -> None:
    one = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(A_X, direction="downstream", depth=1))
    assert ids(one) == {A_X, "node:A/double", A_D}
    two = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(A_X, direction="downstream", depth=2))
    assert ids(two) - ids(one) == {"node:A/increment", A_R, "node:C/double", C_D}
    assert (A_D, "node:C/double", "result") in edges(two)
    deeper = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(A_X, direction="downstream", depth=10))
    assert executions_in(deeper) == {"A", "C"}
    assert {"execution:A", "execution:C", "node:C/increment", C_R} <= ids(deeper)

    both = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(A_R, depth=1))
    assert both["direction"] == "both"
    assert ids(both) == {A_R, "node:A/increment", A_D, "execution:A"}
    assert ("execution:A" in ids(both)) and (A_R, "execution:A", "result") in edges(both)  # the workflow's output


async def test_equal_values_are_found_by_same_value_not_by_lineage(nc: NATS, catalog: None) -> None:
    """B was launched with 7, the value A made and C made again: three artifacts, one hash."""
    walk = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request(B_X, depth=10))
    assert executions_in(walk) == {"B"}
    others = await ask(nc, subjects.CATALOG_SAME_VALUE, lineage_request(A_R))
    assert others["hash"] == H7 and not others["truncated"]
    assert [(a["id"], a["execution_id"], a["node"], a["name"]) for a in others["artifacts"]] == [
        (C_R, "C", "increment", "result"),
        (B_X, "B", "", "x"),
    ]
    every = await ask(nc, subjects.CATALOG_SAME_VALUE, {**HERE, "target": H7, "limit": 2})
    assert [a["id"] for a in every["artifacts"]] == [C_R, B_X] and every["truncated"]
    missing = await ask(nc, subjects.CATALOG_SAME_VALUE, {**HERE, "target": "nothing-here"})
    assert missing["error"]["type"] == "not_found" and "nothing-here" in missing["error"]["message"]
    elsewhere = await ask(nc, subjects.CATALOG_SAME_VALUE, {"project": "other", "domain": DOMAIN, "target": H7})
    assert elsewhere["error"]["type"] == "not_found"


async def test_lineage_of_an_execution(nc: NATS, catalog: None) -> None:
    own = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request("C", depth=0))
    assert own["root"] == "execution:C"
    assert ids(own) == {"execution:C", "node:C/double", "node:C/increment", C_X, C_D, C_R}
    assert len(own["edges"]) == 3 + 3  # what it made (input, two outputs) and read (two inputs, its output)

    up = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request("C", direction="upstream", depth=1))
    assert ids(up) - ids(own) == {A_D}, "one step up: the artifact its cache hit reused"
    down = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request("A", direction="downstream", depth=1))
    assert {"node:C/double", C_D} <= ids(down)
    assert "node:C/increment" not in ids(down)
    alone = await ask(nc, subjects.CATALOG_LINEAGE, lineage_request("B"))
    assert executions_in(alone) == {"B"}


async def test_lineage_of_a_lone_artifact_previews_its_value(nc: NATS, catalog: None, database_url: str) -> None:
    numbers = list(range(100))
    lone = launch_artifact_id("L", "numbers")
    connection = await db.connect(database_url, "test-artifact")
    try:
        await connection.execute(
            "INSERT INTO lineage_values (hash, value, size) VALUES ($1, $2, 390)", value_hash(numbers), numbers
        )
        await connection.execute(
            """INSERT INTO lineage_artifacts (project, domain, artifact_id, execution_id, node_id, name, producer,
                   value_hash, type) VALUES ($1, $2, $3, 'L', '', 'numbers', 'launch', $4, $5)""",
            PROJECT,
            DOMAIN,
            lone,
            value_hash(numbers),
            {"type": "list", "item": {"type": "primitive", "name": "int"}},
        )
    finally:
        await connection.close()
    graph = await ask(nc, subjects.CATALOG_LINEAGE, {**HERE, "target": lone, "direction": "downstream"})
    assert graph["edges"] == []
    [vertex] = graph["nodes"]
    assert (vertex["id"], vertex["type"], vertex["size"], vertex["hash"]) == (
        f"artifact:{lone}",
        "list[int]",
        390,
        value_hash(numbers),
    )
    assert vertex["preview"].startswith("[0, 1, 2, 3") and vertex["preview"].endswith("…")
    assert len(vertex["preview"]) == 60


async def test_lineage_of_unknown_targets_and_bad_requests(nc: NATS, catalog: None) -> None:
    missing = await ask(nc, subjects.CATALOG_LINEAGE, {**HERE, "target": "nothing-here"})
    assert missing["error"]["type"] == "not_found"
    assert "nothing-here" in missing["error"]["message"]
    by_value = await ask(nc, subjects.CATALOG_LINEAGE, {**HERE, "target": H7})
    assert by_value["error"]["type"] == "not_found"
    assert "value's hash, not an artifact" in by_value["error"]["message"]
    for bad in ({}, {"target": ""}, {"target": H7, "depth": -1}, {"target": H7, "direction": "sideways"}):
        assert (await ask(nc, subjects.CATALOG_LINEAGE, {**HERE, **bad}))["error"]["type"] == "bad_request", bad
    assert (await ask(nc, subjects.CATALOG_LINEAGE, {"target": H7}))["error"]["type"] == "bad_request"


async def test_cache_lookup_hit_and_miss(nc: NATS, catalog: None) -> None:
    hit = await ask(nc, subjects.CATALOG_CACHE_LOOKUP, {**HERE, "cache_key": "k-double-7"})
    assert hit == {"found": True, "outputs": {"result": 14}, "execution_id": "B", "node": "double"}
    miss = await ask(nc, subjects.CATALOG_CACHE_LOOKUP, {**HERE, "cache_key": "k-unknown"})
    assert miss == {"found": False, "outputs": None, "execution_id": "", "node": ""}
    elsewhere = await ask(
        nc, subjects.CATALOG_CACHE_LOOKUP, {"project": "other", "domain": DOMAIN, "cache_key": "k-double-7"}
    )
    assert elsewhere["found"] is False
    assert (await ask(nc, subjects.CATALOG_CACHE_LOOKUP, {"project": PROJECT}))["error"]["type"] == "bad_request"


async def test_cache_list_and_show(nc: NATS, catalog: None) -> None:
    listed = (await ask(nc, subjects.CATALOG_LIST_CACHE_ENTRIES, HERE))["entries"]
    assert [e["cache_key"] for e in listed] == ["k-double-7", "k-increment-6", "k-double-3"]
    assert listed[0] == {
        "cache_key": "k-double-7",
        "task_name": DOUBLE,
        "task_version": "t1",
        "execution_id": "B",
        "node": "double",
        "attempt_id": "B/double/1",
        "created_at": "2031-03-01T12:00:03Z",
    }
    doubles = (await ask(nc, subjects.CATALOG_LIST_CACHE_ENTRIES, {**HERE, "task": DOUBLE}))["entries"]
    assert [e["cache_key"] for e in doubles] == ["k-double-7", "k-double-3"]
    assert len((await ask(nc, subjects.CATALOG_LIST_CACHE_ENTRIES, {**HERE, "limit": 1}))["entries"]) == 1
    assert (await ask(nc, subjects.CATALOG_LIST_CACHE_ENTRIES, {"project": "other", "domain": DOMAIN}))["entries"] == []

    shown = (await ask(nc, subjects.CATALOG_SHOW_CACHE_ENTRY, {**HERE, "cache_key": "k-increment-6"}))["entry"]
    assert (shown["outputs"], shown["execution_id"], shown["node"], shown["sequence"]) == (
        {"result": 7},
        "A",
        "increment",
        2,
    )
    missing = await ask(nc, subjects.CATALOG_SHOW_CACHE_ENTRY, {**HERE, "cache_key": "k-unknown"})
    assert missing["error"]["type"] == "not_found"
    assert (await ask(nc, subjects.CATALOG_LIST_CACHE_ENTRIES, {**HERE, "limit": 0}))["error"]["type"] == "bad_request"


async def test_registry_list_and_show(nc: NATS, catalog: None) -> None:
    tasks = await ask(nc, subjects.CATALOG_LIST_ENTITIES, {**HERE, "kind": "task"})
    assert [(t["name"], [v["version"] for v in t["versions"]]) for t in tasks["entities"]] == [
        (DOUBLE, ["d3", "d2", "d1"]),
        (INCREMENT, ["i1"]),
    ]
    assert tasks["entities"][0]["versions"][0]["registered_at"] == "2031-03-01T12:01:45Z"
    only = await ask(nc, subjects.CATALOG_LIST_ENTITIES, {**HERE, "kind": "task", "name": INCREMENT})
    assert [t["name"] for t in only["entities"]] == [INCREMENT]
    plans = await ask(nc, subjects.CATALOG_LIST_ENTITIES, {**HERE, "kind": "launch_plan"})
    assert [p["name"] for p in plans["entities"]] == ["daily"]

    latest = (await ask(nc, subjects.CATALOG_SHOW_ENTITY, {**HERE, "kind": "task", "name": DOUBLE}))["entity"]
    assert (latest["version"], latest["spec"]) == ("d3", {"name": DOUBLE, "version": "d3"})
    older = (await ask(nc, subjects.CATALOG_SHOW_ENTITY, {**HERE, "kind": "task", "name": DOUBLE, "version": "d1"}))[
        "entity"
    ]
    assert (older["kind"], older["version"], older["registered_at"]) == ("task", "d1", "2031-03-01T12:01:41Z")
    workflow = await ask(
        nc, subjects.CATALOG_SHOW_ENTITY, {**HERE, "kind": "workflow", "name": WORKFLOW, "version": "latest"}
    )
    assert workflow["entity"]["version"] == "w1"

    no_version = await ask(nc, subjects.CATALOG_SHOW_ENTITY, {**HERE, "kind": "task", "name": DOUBLE, "version": "d9"})
    assert no_version["error"]["type"] == "not_found" and "d9" in no_version["error"]["message"]
    no_name = await ask(nc, subjects.CATALOG_SHOW_ENTITY, {**HERE, "kind": "workflow", "name": DOUBLE})
    assert no_name["error"]["type"] == "not_found"
    bad_kind = await ask(nc, subjects.CATALOG_LIST_ENTITIES, {**HERE, "kind": "gadget"})
    assert bad_kind["error"]["type"] == "bad_request" and "kind" in bad_kind["error"]["message"]


async def test_client_methods_read_the_catalog(nats_url: str, catalog: None) -> None:
    async with await AsyncClient.connect(nats_url, PROJECT, DOMAIN) as client:
        position = await client.log_position()
        assert [e.cache_key for e in await client.cache_entries(DOUBLE, min_sequence=position)] == [
            "k-double-7",
            "k-double-3",
        ]
        assert (await client.cache_entry("k-double-3")).outputs == {"result": 6}
        with pytest.raises(NotFound, match="k-nope"):
            await client.cache_entry("k-nope")
        graph = await client.lineage(artifact("C", "increment"), "upstream", 1)
        assert graph.root == f"artifact:{artifact('C', 'increment')}"
        same = await client.same_value(artifact("A", "increment"))
        assert [(a.execution_id, a.node, a.name) for a in same.artifacts] == [
            ("C", "increment", "result"),
            ("B", "", "x"),
        ]
        assert [t.name for t in await client.tasks()] == [DOUBLE, INCREMENT]
        assert [w.name for w in await client.workflows()] == [WORKFLOW]
        assert [p.name for p in await client.launch_plans()] == ["daily"]
        assert (await client.show_entity("task", DOUBLE, "d2")).spec["version"] == "d2"
        with pytest.raises(NotFound):
            await client.show_entity("launch_plan", "weekly")


def filled(key: str, at: datetime) -> CacheFilled:
    return CacheFilled(
        project=PROJECT,
        domain=DOMAIN,
        cache_key=key,
        task_name=DOUBLE,
        task_version="t1",
        outputs={"result": 6},
        execution_id="A",
        node="double",
        attempt_id="A/double/1",
        at=at,
    )


async def test_clear_cache_clears_filled_keys_only(nc: NATS, nats_url: str) -> None:
    now = datetime.now(UTC)
    js = nc.jetstream()
    fill = await CacheLog(js, PROJECT, DOMAIN, "k-filled").append(filled("k-filled", now))
    reservation = CacheReserved(execution_id="C", node="double", at=now, until=now + timedelta(minutes=5))
    await CacheLog(js, PROJECT, DOMAIN, "k-reserved").append(reservation)

    async with await AsyncClient.connect(nats_url, PROJECT, DOMAIN) as client:
        outcome = await client.clear_cache(["k-filled", "k-reserved", "k-never"], cleared_by="tester")
    assert outcome.cleared == ["k-filled"]
    assert outcome.skipped == {"k-reserved": "it is being computed by C/double", "k-never": "it has no entry"}

    sequence, record = await CacheLog(js, PROJECT, DOMAIN, "k-filled").last()
    assert sequence > fill
    assert isinstance(record, CacheCleared)
    assert (record.cache_key, record.cleared_by, record.project) == ("k-filled", "tester", PROJECT)
    assert record.at >= now
    assert isinstance((await CacheLog(js, PROJECT, DOMAIN, "k-reserved").last())[1], CacheReserved)

    def clear_again() -> tuple[list[str], dict[str, str]]:
        with Client(nats_url, PROJECT, DOMAIN) as blocking:
            again = blocking.clear_cache(["k-filled"])
        return again.cleared, again.skipped

    assert await anyio.to_thread.run_sync(clear_again) == ([], {"k-filled": "it has no entry"})
