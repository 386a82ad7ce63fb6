"""Lineage across executions, end to end: B reads what A wrote, and the catalog links them through the artifact."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from plait.client import ArtifactNode, AsyncClient, NodeExecutionNode
from plait.core.ids import artifact_hash
from tests import cache_workflows
from tests.helpers.stack import services_and_client

DEADLINE = 60.0


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def test_an_output_of_one_execution_read_by_another_links_them(client: AsyncClient) -> None:
    first = await client.launch(cache_workflows.squared_then_doubled, {"x": 3})
    assert await first.result(timeout=DEADLINE) == 18
    second = await client.launch(cache_workflows.squared_then_doubled, {"x": 18})
    b = await second.wait(timeout=DEADLINE)
    assert b.outputs == {"result": 2 * 18 * 18}
    a_id, b_id = first.id, second.id

    shared = artifact_hash(18)
    graph = await client.lineage(shared, "both", depth=2, min_sequence=b.last_sequence)
    ids = {node.id for node in graph.nodes}
    writers = {(e.source, e.target) for e in graph.edges if e.target == graph.root}
    readers = {(e.source, e.target) for e in graph.edges if e.source == graph.root}
    node_of = {n.id: n for n in graph.nodes if isinstance(n, NodeExecutionNode)}
    assert {(node_of[s].execution_id, node_of[s].node) for s, _ in writers} >= {
        (a_id, "plain_double"),
        (a_id, ""),
    }
    assert {(node_of[t].execution_id, node_of[t].node) for _, t in readers} >= {(b_id, ""), (b_id, "slow_square")}

    upstream = await client.lineage(b_id, "upstream", depth=6, min_sequence=b.last_sequence)
    executions = {n.execution_id for n in upstream.nodes if isinstance(n, NodeExecutionNode)}
    assert executions == {a_id, b_id}, "walking up from B reaches the nodes of A that made its input"
    assert artifact_hash(3) in {n.hash for n in upstream.nodes if isinstance(n, ArtifactNode)}
    assert f"artifact:{shared}" in ids
