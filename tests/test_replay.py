"""Replay: stored history (recorded fixtures and a live log) rebuilds the state the scheduler reached."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from plait import codec
from plait.audit import verify_chain
from plait.client import AsyncClient
from plait.codec import DecisionDecoder
from plait.core.events import Decision, NodeSucceeded
from plait.core.upcast import RawEvent, upcast_event
from plait.errors import NotFound, PlaitError
from plait.replay import Record, replay, timeline
from tests import audit_workflows
from tests.fixtures.record_history import FIXTURE, FixtureLine
from tests.helpers.plait_command import plait_command_async
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state


def fixture_logs(path: Path = FIXTURE) -> dict[str, list[Record]]:
    logs: dict[str, list[Record]] = {}
    for raw in path.read_bytes().splitlines():
        line = msgspec.json.decode(raw, type=FixtureLine)
        record = Record(sequence=line.sequence, subject=line.subject, data=line.data.encode(), msg_id=line.msg_id)
        logs.setdefault(line.execution, []).append(record)
    return logs


@pytest.fixture
def logs() -> dict[str, list[Record]]:
    return fixture_logs()


def test_recorded_history_replays_to_its_final_states(logs: dict[str, list[Record]]) -> None:
    assert set(logs) == {"succeeded", "failed", "aborted"}
    for records in logs.values():
        assert verify_chain(records) == []
        for record in records:
            msgspec.json.decode(record.data, type=Decision)  # written by this release: no upcasting needed

    succeeded = replay(logs["succeeded"])
    assert (succeeded.status, succeeded.outputs) == ("succeeded", {"result": 12})
    assert [node.status for node in succeeded.nodes.values()] == ["succeeded", "succeeded"]

    failed = replay(logs["failed"])
    assert (failed.status, failed.failed_node) == ("failed", "unlucky")
    assert [a.status for a in failed.nodes["unlucky"].attempts] == ["failed", "failed"], "failed after a retry"
    assert failed.error is not None and failed.error.message == "bad luck with 1"
    assert failed.nodes["double"].status == "aborted"

    aborted = replay(logs["aborted"])
    assert (aborted.status, aborted.abort_reason) == ("aborted", "operator said so")
    [rejected] = aborted.rejected_commands
    assert rejected.command_id.startswith("bogus-start") and "no attempt 'no-such-attempt'" in rejected.reason
    assert aborted.last_sequence == logs["aborted"][-1].sequence and aborted.decisions == len(logs["aborted"])


def test_replay_stops_at_a_sequence_or_a_time(logs: dict[str, list[Record]]) -> None:
    records = logs["succeeded"]
    first = replay(records, at_sequence=records[0].sequence)
    assert (first.status, first.decisions, first.last_sequence) == ("running", 1, records[0].sequence)
    assert first.nodes["double"].status == "queued"
    launched_at = codec.decision_decoder.decode(records[0].data).at
    assert replay(records, at_time=launched_at).decisions == 1
    assert replay(records, at_time=launched_at + timedelta(days=1)).status == "succeeded"
    with pytest.raises(NotFound):
        replay(records, at_time=launched_at - timedelta(seconds=1))
    with pytest.raises(NotFound, match=f"up to sequence {records[0].sequence - 1}"):
        replay(records, at_sequence=records[0].sequence - 1)
    assert {t.sequence for t in timeline(records, at_sequence=records[1].sequence)} == {
        records[0].sequence,
        records[1].sequence,
    }
    garbled = [records[0], msgspec.structs.replace(records[1], data=b"{}"), *records[2:]]
    with pytest.raises(PlaitError, match=f"record 1 \\(sequence {records[1].sequence}\\)"):
        replay(garbled)


def test_the_timeline_says_who_did_what_when_and_why(logs: dict[str, list[Record]]) -> None:
    records = logs["failed"]
    transitions = timeline(records)
    assert len(transitions) == sum(len(codec.decision_decoder.decode(r.data).events) for r in records)
    launched = transitions[0]
    assert (launched.event, launched.index, launched.sequence) == ("execution_launched.v1", 0, records[0].sequence)
    assert launched.replica == "test-scheduler" and launched.commands[0].startswith("launch:")
    failures = [t for t in transitions if t.event == "attempt_failed.v1"]
    assert [t.attempt_id.rsplit("/", 1)[-1] for t in failures if t.attempt_id] == ["1", "2"]
    assert all(t.node == "unlucky" and f"{t.attempt_id}:result" in t.commands for t in failures)
    assert [t.event for t in transitions][-1] == "execution_failed.v1"
    assert [t.at for t in transitions] == sorted(t.at for t in transitions)


# --- schema evolution --------------------------------------------------------------------------------------------


def node_succeeded_v0_to_v1(raw: RawEvent) -> RawEvent:
    """What a release renaming ``result`` to ``outputs`` and ``attempt`` to ``attempt_id`` would register."""
    upcast = {key: value for key, value in raw.items() if key not in ("result", "attempt")}
    return {**upcast, "type": "node_succeeded.v1", "outputs": raw["result"], "attempt_id": raw["attempt"]}


def node_done_v0_to_node_succeeded_v0(raw: RawEvent) -> RawEvent:
    """An even older name of the same fact: the chain goes on through ``node_succeeded.v0`` to v1."""
    upcast = {key: value for key, value in raw.items() if key != "value"}
    return {**upcast, "type": "node_succeeded.v0", "result": {"result": raw["value"]}}


UPCASTERS = {"node_succeeded.v0": node_succeeded_v0_to_v1, "node_done.v0": node_done_v0_to_node_succeeded_v0}


def as_v0(data: bytes) -> bytes:
    """The record as an older release would have written it: its ``node_succeeded`` events in v0 shape."""
    raw: dict[str, Any] = json.loads(data)
    for index, event in enumerate(raw["events"]):
        if event["type"] == "node_succeeded.v1":
            raw["events"][index] = {
                "type": "node_succeeded.v0",
                "node": event["node"],
                "attempt": event["attempt_id"],
                "result": event["outputs"],
                "worker": event["worker"],
            }
    return json.dumps(raw).encode()


def test_an_upcaster_turns_a_v0_event_into_the_current_one() -> None:
    v0 = {"type": "node_succeeded.v0", "node": "double", "attempt": "e/double/1", "result": {"result": 4}}
    assert upcast_event(v0, UPCASTERS) == {
        "type": "node_succeeded.v1",
        "node": "double",
        "attempt_id": "e/double/1",
        "outputs": {"result": 4},
    }
    older = {"type": "node_done.v0", "node": "double", "attempt": "e/double/1", "value": 4}
    assert upcast_event(older, UPCASTERS) == upcast_event(v0, UPCASTERS), "upcasters chain"
    assert upcast_event({"type": "node_succeeded.v1"}, UPCASTERS) == {"type": "node_succeeded.v1"}
    with pytest.raises(ValueError, match="loop"):
        upcast_event({"type": "a"}, {"a": lambda raw: {"type": "b"}, "b": lambda raw: {"type": "a"}})


def test_history_in_an_old_version_replays_through_the_upcasters(
    logs: dict[str, list[Record]], monkeypatch: pytest.MonkeyPatch
) -> None:
    current = logs["succeeded"]
    old = [msgspec.structs.replace(r, data=as_v0(r.data)) for r in current]
    assert any(b"node_succeeded.v0" in r.data for r in old)
    with pytest.raises(msgspec.ValidationError):
        codec.decision_decoder.decode(next(r.data for r in old if b"node_succeeded.v0" in r.data))

    decoder = DecisionDecoder(UPCASTERS)
    decision = decoder.decode(next(r.data for r in old if b"node_succeeded.v0" in r.data))
    assert any(isinstance(e, NodeSucceeded) and e.outputs == {"result": 6} for e in decision.events)
    monkeypatch.setattr(codec, "decision_decoder", decoder)
    replayed, expected = replay(old), replay(current)
    assert (replayed.status, replayed.outputs) == (expected.status, expected.outputs) == ("succeeded", {"result": 12})
    assert {n: s.outputs for n, s in replayed.nodes.items()} == {n: s.outputs for n, s in expected.nodes.items()}


# --- the command --------------------------------------------------------------------------------------------------


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def test_plait_replay_reads_the_log(client: AsyncClient, nats_url: str) -> None:
    execution_id = (await client.launch(audit_workflows.doubled, {"x": 5})).id
    final = await final_state(client, execution_id, timeout=60)
    records = await client.records(execution_id)
    env = {"PLAIT_NATS_URL": nats_url}

    done = await plait_command_async(["replay", execution_id, "--json"], env)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert (state["status"], state["outputs"], state["last_sequence"]) == (
        "succeeded",
        {"result": 20},
        final.last_sequence,
    )

    early = await plait_command_async(["replay", execution_id, "--json", "--at", str(records[0].sequence)], env)
    assert json.loads(early.stdout)["status"] == "running"

    table = await plait_command_async(["replay", execution_id], env)
    assert table.returncode == 0 and "status: succeeded" in table.stdout and "double-1" in table.stdout

    steps = await plait_command_async(["replay", execution_id, "--timeline", "--json"], env)
    events = [step["event"] for step in json.loads(steps.stdout)]
    assert events[0] == "execution_launched.v1" and events[-1] == "execution_succeeded.v1"
    shown = await plait_command_async(["replay", execution_id, "--timeline"], env)
    assert "node_succeeded.v1" in shown.stdout and "test-scheduler" in shown.stdout

    missing = await plait_command_async(["replay", "nothing-here"], env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad = await plait_command_async(["replay", execution_id, "--at", "yesterday"], env)
    assert bad.returncode == 2 and "--at expects" in bad.stderr
