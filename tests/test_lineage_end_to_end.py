"""Lineage end to end: artifacts are outputs of attempts, linked only through what each input read; equal values
of unrelated executions are found by ``same_value``, and a cache hit links its execution to the source's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plait.client import ArtifactNode, AsyncClient, LineageGraph, NodeExecutionNode
from plait.core.ids import attempt_id, value_hash
from plait.core.lineage import artifact_id
from tests import lineage_workflows
from tests.helpers.stack import services_and_client

DEADLINE = 60.0


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


def artifacts(graph: LineageGraph) -> dict[tuple[str, str, str], ArtifactNode]:
    """The graph's artifacts by (execution, node, name)."""
    return {(a.execution_id, a.node, a.name): a for a in graph.nodes if isinstance(a, ArtifactNode)}


def executions(graph: LineageGraph) -> set[str]:
    return {n.execution_id for n in graph.nodes}


async def run_chain(client: AsyncClient, x: int, directory: Path) -> tuple[str, int]:
    """Run ``chain(x)``; returns its execution id and the last sequence of its history."""
    launched = await client.launch(lineage_workflows.chain, {"x": x, "directory": str(directory)})
    done = await launched.wait(timeout=DEADLINE)
    assert done.outputs == {"result": (2 * x) ** 2 + 1}
    return launched.id, done.last_sequence


async def test_a_chain_links_each_output_to_the_attempt_that_made_it(client: AsyncClient, tmp_path: Path) -> None:
    """A → B → C: walking up from C's output gives each artifact with its attempt; A's is its second attempt's."""
    run, seen = await run_chain(client, 3, tmp_path)
    shown = await client.show_execution(run, min_sequence=seen)
    [add_node] = [n for n in shown.nodes if n.node == "add"]
    made_by = attempt_id(run, "add", 1)
    result = artifact_id(run, "add", made_by, "result")
    graph = await client.lineage(result, "upstream", depth=10, min_sequence=seen)
    found = artifacts(graph)
    assert {key: (a.producer, a.attempt_id, a.hash) for key, a in found.items()} == {
        (run, "add", "result"): ("attempt", made_by, value_hash(37)),
        (run, "add", "b"): ("constant", "", value_hash(1)),
        (run, "cached_square", "result"): ("attempt", attempt_id(run, "cached_square", 1), value_hash(36)),
        (run, "flaky_double", "result"): ("attempt", attempt_id(run, "flaky_double", 2), value_hash(6)),
        (run, "", "x"): ("launch", "", value_hash(3)),
        (run, "", "directory"): ("launch", "", value_hash(str(tmp_path))),
    }
    edges = {(e.source, e.target, e.name, e.kind) for e in graph.edges}
    double, square = found[run, "flaky_double", "result"].id, found[run, "cached_square", "result"].id
    assert {
        (double, f"node:{run}/cached_square", "x", "used"),
        (f"node:{run}/cached_square", square, "result", "produced"),
        (square, f"node:{run}/add", "a", "used"),
        (found[run, "add", "b"].id, f"node:{run}/add", "b", "used"),
    } <= edges
    assert executions(graph) == {run}
    assert add_node.status == "succeeded"


async def test_unrelated_executions_with_equal_values_are_linked_only_by_same_value(
    client: AsyncClient, tmp_path: Path
) -> None:
    """Both read the constant 1, and both launch with this directory: nothing links them but ``same_value``."""
    first, _ = await run_chain(client, 3, tmp_path)
    second, seen = await run_chain(client, 5, tmp_path)
    for run in (first, second):
        for direction in ("upstream", "downstream"):
            graph = await client.lineage(run, direction, depth=10, min_sequence=seen)
            assert executions(graph) == {run}, (run, direction)
    own = artifacts(await client.lineage(first, depth=0, min_sequence=seen))
    constant = own[first, "add", "b"]
    downstream = await client.lineage(constant.id.removeprefix("artifact:"), "downstream", depth=10)
    assert executions(downstream) == {first}

    same = await client.same_value(constant.id.removeprefix("artifact:"), min_sequence=seen)
    assert same.hash == value_hash(1)
    assert [(a.execution_id, a.node, a.name, a.producer) for a in same.artifacts] == [(second, "add", "b", "constant")]
    directory = await client.same_value(value_hash(str(tmp_path)))
    assert {a.execution_id for a in directory.artifacts} == {first, second}


async def test_a_cache_hit_crosses_to_the_execution_that_computed_it(client: AsyncClient, tmp_path: Path) -> None:
    source, _ = await run_chain(client, 3, tmp_path)
    hit, seen = await run_chain(client, 3, tmp_path)  # flaky_double runs again (first try); cached_square is a hit
    graph = await client.lineage(hit, "upstream", depth=3, min_sequence=seen)
    found = artifacts(graph)
    reused = found[hit, "cached_square", "result"]
    assert (reused.producer, reused.source_execution, reused.source_node, reused.attempt_id) == (
        "cache",
        source,
        "cached_square",
        "",
    )
    original = found[source, "cached_square", "result"]
    assert original.attempt_id == attempt_id(source, "cached_square", 1) and original.hash == reused.hash
    assert (original.id, f"node:{hit}/cached_square", "result", "cached") in {
        (e.source, e.target, e.name, e.kind) for e in graph.edges
    }
    assert f"node:{source}/flaky_double" in {n.id for n in graph.nodes if isinstance(n, NodeExecutionNode)}
    assert (hit, "flaky_double", "result") in found and found[hit, "flaky_double", "result"].attempt_id == attempt_id(
        hit, "flaky_double", 1
    )
    down = await client.lineage(source, "downstream", depth=2, min_sequence=seen)
    assert hit in executions(down), "downstream of the source: the execution that reused its result"
