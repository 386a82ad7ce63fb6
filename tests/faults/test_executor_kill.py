"""An executor killed with SIGKILL while its attempts run: another executor runs them, each result kept once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from plait.core.events import NodeSucceeded
from plait.protocol import subjects
from tests import chunk_workflows, workflows
from tests.faults import harness
from tests.helpers.reading import events_of
from tests.helpers.states import final_state

pytestmark = pytest.mark.faults

EXECUTIONS = 4


async def test_killing_an_executor_mid_attempt_reruns_its_attempts_elsewhere(nats_url: str) -> None:
    env = harness.service_env(nats_url)
    processes = [harness.start_service("scheduler", env)]
    report = harness.FaultReport("executor killed mid-attempt (SIGKILL)", executions=EXECUTIONS)
    with harness.stopped_at_exit(processes):
        victim = harness.start_service("executor", {**env, "PLAIT_REPLICA": "victim"})
        processes.append(victim)
        async with harness.connected(nats_url) as client:
            ids = [(await client.launch(workflows.paused, {"seconds": 3.0})).id for _ in range(EXECUTIONS)]
            await harness.in_thread(victim.wait_for_event, "attempt_started")
            await harness.in_thread(victim.kill)
            report.faults += 1
            processes.append(harness.start_service("executor", {**env, "PLAIT_REPLICA": "survivor"}))
            await harness.wait_all(client, ids, timeout=90, report=report)
            for execution_id in ids:
                state = await final_state(client, execution_id, timeout=10)
                assert state.status == "succeeded", state.error
                successes = [
                    e
                    async for stored in client.events(execution_id)
                    for e in stored.decision.events
                    if isinstance(e, NodeSucceeded)
                ]
                assert len(successes) == 1
            report.problems = await harness.audit_log(client)
    report.check()


async def test_killing_an_executor_holding_a_chunk_reruns_only_its_unfinished_attempts(
    nats_url: str, tmp_path: Path
) -> None:
    """The victim took one chunk of six attempts, ran the two quick ones and was killed in the slow ones: the chunk
    comes back after its ack wait, and the survivor runs what had not ended (the quick ones' results are decided)."""
    runs = str(tmp_path / "runs")
    env = harness.service_env(nats_url)
    processes = [harness.start_service("scheduler", {**env, "PLAIT_DISPATCH_LEAST_CHUNKS": "1"})]
    report = harness.FaultReport("executor killed holding a dispatch chunk (SIGKILL)", executions=1)
    with harness.stopped_at_exit(processes):
        victim = harness.start_service("executor", {**env, "PLAIT_REPLICA": "victim"})
        processes.append(victim)
        async with harness.connected(nats_url) as client:
            execution_id = (await client.launch(chunk_workflows.quick_then_slow, {"runs": runs})).id
            await chunk_workflows.until_run(runs, {"s0", "s1"})  # its two workers are in slow ones
            await events_of(client, execution_id, NodeSucceeded, 2)  # and the quick ones' results are decided
            await harness.in_thread(victim.kill)
            report.faults += 1
            processes.append(harness.start_service("executor", {**env, "PLAIT_REPLICA": "survivor"}))
            await harness.wait_all(client, [execution_id], timeout=90, report=report)
            state = await final_state(client, execution_id, timeout=10)
            assert state.status == "succeeded", state.error
            successes = [
                e.node
                async for stored in client.events(execution_id)
                for e in stored.decision.events
                if isinstance(e, NodeSucceeded)
            ]
            assert len(successes) == len(set(successes)) == 7
            stored = (await client.js.stream_info(subjects.DISPATCH_STREAM)).state
            report.problems = await harness.audit_log(client)
    ran = Counter(chunk_workflows.runs_of(runs))
    assert ran["q0"] == ran["q1"] == 1, "the quick attempts the victim finished did not run again"
    assert ran["s0"] == ran["s1"] == 2, "the slow ones it was running ran again on the survivor"
    assert ran["s2"] == ran["s3"] == 1
    assert stored.last_seq == 2, "one chunk of six attempts, and the join"
    report.check()


async def test_killing_an_executor_that_handed_on_part_of_a_chunk_loses_nothing(nats_url: str, tmp_path: Path) -> None:
    """The victim (one worker) runs one attempt of a chunk of two and hands the other on to the survivor; killed
    before its chunk is acked, the chunk comes back after the ack wait: what had not ended runs again, and each
    node's result is decided once."""
    gate, runs = tmp_path / "gate", str(tmp_path / "runs")
    env = harness.service_env(nats_url, PLAIT_CONCURRENCY="1")
    processes = [harness.start_service("scheduler", env)]
    report = harness.FaultReport("executor killed after handing on part of a chunk (SIGKILL)", executions=1)
    with harness.stopped_at_exit(processes):
        victim = harness.start_service("executor", {**env, "PLAIT_REPLICA": "victim"})
        processes.append(victim)
        async with harness.connected(nats_url) as client:
            inputs = {"gate": str(gate), "runs": runs}
            execution_id = (await client.launch(chunk_workflows.two_gated, inputs)).id
            await chunk_workflows.until_run_count(runs, 1)  # the victim's one worker runs one; the other waits
            survivor = harness.start_service("executor", {**env, "PLAIT_REPLICA": "survivor", "PLAIT_CONCURRENCY": "2"})
            processes.append(survivor)
            handed_on = await harness.in_thread(victim.wait_for_event, "attempts_handed_on")
            await chunk_workflows.until_run_count(runs, 2)  # the survivor runs it
            await harness.in_thread(victim.kill)
            report.faults += 1
            gate.write_text("open")
            await harness.wait_all(client, [execution_id], timeout=90, report=report)
            state = await final_state(client, execution_id, timeout=10)
            successes = [
                e.node
                async for stored in client.events(execution_id)
                for e in stored.decision.events
                if isinstance(e, NodeSucceeded)
            ]
            report.problems = await harness.audit_log(client)
    assert state.status == "succeeded", state.error
    assert sorted(successes) == ["counted", "gated", "gated-1"], "each node's result decided once"
    ran = Counter(chunk_workflows.runs_of(runs))
    assert ran.keys() == {"g0", "g1"} and all(count <= 2 for count in ran.values()), ran
    assert isinstance(handed_on["attempts"], list) and len(handed_on["attempts"]) == 1
    report.check()
