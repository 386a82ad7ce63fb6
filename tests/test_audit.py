"""Audit: intact histories verify clean against the catalog; damaged ones are reported at the damaged record."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from plait import codec
from plait.audit import Problem, verify_catalog, verify_chain
from plait.audit_lineage import verify_lineage
from plait.client import ArtifactNode, AsyncClient
from plait.core.events import Decision, NodeSucceeded
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID
from plait.replay import Record, replay
from tests.audit_workflows import make_history
from tests.helpers.plait_command import plait_command_async
from tests.helpers.stack import services_and_client


@dataclasses.dataclass
class History:
    client: AsyncClient
    ids: dict[str, str]
    env: dict[str, str]  # for `plait` commands: the server, and the domain the history was made in


@pytest.fixture
async def history(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[History]:
    domain = f"audit-{uuid.uuid4().hex[:12]}"
    async with services_and_client(nats_url, database_url):
        async with await AsyncClient.connect(nats_url, domain=domain) as client:
            env = {"PLAIT_NATS_URL": nats_url, "PLAIT_DOMAIN": domain}
            yield History(client, await make_history(client, tmp_path), env)


def where(problems: list[Problem]) -> set[tuple[str, int | None]]:
    return {(problem.kind, problem.index) for problem in problems}


def forged(records: list[Record], previous: str, execution_id: str | None = None) -> Record:
    """A decision nobody decided, put after ``records`` with the given ``previous``."""
    last = codec.decision_decoder.decode(records[-1].data)
    decision = Decision(
        execution_id=execution_id or last.execution_id,
        at=datetime.now(UTC),
        replica="mallory",
        commands=("forged",),
        previous=previous,
        events=(NodeSucceeded(node="double", attempt_id="forged", outputs={"result": 666}),),
    )
    data = codec.encode(decision)
    return Record(sequence=records[-1].sequence + 1, subject=records[-1].subject, data=data, msg_id=codec.digest(data))


async def test_an_intact_history_verifies_clean_against_the_catalog(history: History) -> None:
    client = history.client
    assert len(history.ids) == 3
    for name, execution_id in history.ids.items():
        records = await client.records(execution_id)
        assert verify_chain(records) == [], name
        state = replay(records)
        shown = await client.show_execution(execution_id, min_sequence=state.last_sequence)
        assert verify_catalog(state, shown) == [], name
    failed = replay(await client.records(history.ids["failed"]))
    assert failed.status == "failed" and len(failed.nodes["unlucky"].attempts) == 2

    done = await plait_command_async(["audit", "verify", "--all"], history.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 executions, 0 problems (chains, invariants and catalog checked)" in done.stderr


async def test_a_catalog_row_that_differs_from_the_log_is_reported(history: History) -> None:
    execution_id = history.ids["failed"]
    state = replay(await history.client.records(execution_id))
    row = await history.client.show_execution(execution_id, min_sequence=state.last_sequence)
    row.status = "succeeded"
    node = row.nodes[0]
    node.attempts, node.attempts_total = node.attempts[:1], 1  # the catalog lost an attempt's row
    problems = verify_catalog(state, row)
    assert [p.kind for p in problems] == ["catalog_mismatch", "catalog_mismatch"]
    assert "status: catalog has 'succeeded', the log 'failed'" in problems[0].message
    assert problems[1].message.startswith("node 'unlucky'")

    row.status, node.attempts_total = "failed", 2
    assert verify_catalog(state, row) == [], "a catalog may show only the first attempts of a node, with their count"
    node.attempts[0].status = "succeeded"
    [changed] = verify_catalog(state, row)
    assert changed.message.startswith("node 'unlucky'") and "'succeeded'" in changed.message


async def test_catalog_lineage_that_differs_from_the_log_is_reported(history: History) -> None:
    """The catalog's artifacts and uses of an execution must be those ``plait.core.lineage`` derives from it."""
    for name, execution_id in history.ids.items():
        records = await history.client.records(execution_id)
        graph = await history.client.lineage(execution_id, depth=0, min_sequence=records[-1].sequence)
        assert verify_lineage(records, graph) == [], name
        if any(isinstance(v, ArtifactNode) and v.producer == "attempt" for v in graph.nodes):
            made = next(v for v in graph.nodes if isinstance(v, ArtifactNode) and v.producer == "attempt")
            made.attempt_id = "someone-else"
            graph.edges = [e for e in graph.edges if e.kind != "used" or e.source != made.id]
            problems = verify_lineage(records, graph)
            assert [p.kind for p in problems][:1] == ["catalog_mismatch"]
            assert problems[0].message.startswith(f"artifact {made.id}: catalog has ")
            assert any("in the log, not in the catalog" in p.message for p in problems[1:])


async def test_damaged_record_lists_are_reported_at_the_damaged_record(history: History) -> None:
    records = await history.client.records(history.ids["failed"])
    assert len(records) >= 3, "launch, first attempt failed (and retried), second attempt failed"
    after = {("chain_broken", 3)} if len(records) > 3 else set()  # the record after the damage, if any

    missing = [records[0], *records[2:]]
    [problem] = verify_chain(missing)
    assert (problem.kind, problem.index, problem.sequence) == ("chain_broken", 1, records[2].sequence)
    assert "is missing" in problem.message

    swapped = [records[0], records[2], records[1], *records[3:]]
    problems = verify_chain(swapped)
    assert where(problems) == {("out_of_order", 2), ("chain_broken", 1), ("chain_broken", 2)} | after
    assert "reordered" in next(p for p in problems if p.index == 1).message

    original = records[1]
    altered_data = original.data.replace(b'"replica":"', b'"replica":"x', 1)
    assert altered_data != original.data
    altered = [records[0], msgspec.structs.replace(original, data=altered_data), *records[2:]]
    assert where(verify_chain(altered)) == {("altered", 1), ("chain_broken", 2)}

    garbled = [records[0], msgspec.structs.replace(original, data=b"{not json"), *records[2:]]
    assert where(verify_chain(garbled)) == {("altered", 1), ("undecodable", 1), ("chain_broken", 2)}

    appended = [*records, forged(records, previous="0" * 64)]
    assert where(verify_chain(appended)) == {("chain_broken", len(records))}

    other = await history.client.records(history.ids["succeeded"])
    spliced = [*records, forged(records, codec.digest(records[-1].data), execution_id=history.ids["succeeded"])]
    assert where(verify_chain(spliced)) == {("wrong_execution", len(records))}
    relaunched = [
        *records,
        msgspec.structs.replace(other[0], sequence=records[-1].sequence + 1, subject=records[0].subject),
    ]
    assert ("relaunched", len(records)) in where(verify_chain(relaunched))
    assert where(verify_chain(records[1:])) == {("not_launched", 0), ("chain_broken", 0)}


async def test_a_forged_decision_published_to_the_subject_is_found(history: History) -> None:
    client, execution_id = history.client, history.ids["succeeded"]
    records = await client.records(execution_id)
    fork = forged(records, previous=codec.digest(records[0].data))
    subject = subjects.execution_subject(client.project, client.domain, execution_id)
    ack = await client.js.publish(subject, fork.data, headers={NATS_MSG_ID: fork.msg_id}, stream=subjects.EVENTS_STREAM)

    stored = await client.records(execution_id)
    [problem] = verify_chain(stored)
    assert (problem.kind, problem.index, problem.sequence) == ("chain_broken", len(records), ack.seq)
    assert "chains to record 0" in problem.message

    done = await plait_command_async(["audit", "verify", execution_id], history.env)
    assert done.returncode == 1
    assert f"record {len(records)} (sequence {ack.seq}): chain_broken" in done.stdout
    as_json = await plait_command_async(["audit", "verify", execution_id, "--json"], history.env)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["executions"] == 1
    found = [(p["kind"], p["sequence"], p["execution_id"]) for p in report["problems"]]
    assert ("chain_broken", ack.seq, execution_id) in found
    assert len(found) == len(done.stdout.strip().splitlines())
    clean = await plait_command_async(["audit", "verify", history.ids["failed"]], history.env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
