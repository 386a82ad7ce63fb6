"""The invariant checker: a clean history passes; each hand-built violation is reported at its record."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait.audit import Problem
from plait.audit_lineage import check_lineage
from plait.core.events import (
    AttemptFailed,
    AttemptStarted,
    CommandRejected,
    Event,
    ExecutionLaunched,
    ExecutionSucceeded,
    MapItemSucceeded,
    NodeQueued,
    NodeSucceeded,
    TaskError,
)
from plait.core.ids import attempt_id, item_attempt_id
from plait.invariants import check_execution
from plait.protocol.headers import NATS_MSG_ID
from plait.replay import replay
from tests import cluster_workflows, definitions, map_workflows
from tests.helpers.launching import launched
from tests.helpers.plait_command import plait_command_async
from tests.helpers.records import T0, history
from tests.helpers.states import catalog_view

EXECUTION = "inv-1"
BOOM = TaskError(kind="user", message="boom")


def launch_events(execution_id: str = EXECUTION) -> list[Event]:
    """The diamond's launch: ``increment`` queued; then ``double`` and ``increment-1``; then ``merge``."""
    _, events = launched(definitions.diamond, {"x": 1}, T0, execution_id)
    return events


def queued(
    node: str, attempt: int = 1, task: str = "increment", execution_id: str = EXECUTION, inputs: Any = None
) -> NodeQueued:
    return NodeQueued(
        node=node,
        attempt_id=attempt_id(execution_id, node, attempt),
        attempt=attempt,
        task=f"tests.definitions.{task}",
        queue="default",
        inputs={"x": 1} if inputs is None else inputs,
    )


def done(node: str, value: Any, attempt: int = 1, execution_id: str = EXECUTION) -> NodeSucceeded:
    return NodeSucceeded(node=node, attempt_id=attempt_id(execution_id, node, attempt), outputs={"result": value})


def clean_run(execution_id: str = EXECUTION) -> list[list[Event]]:
    e = execution_id
    return [
        launch_events(e),
        [
            done("increment", 2, execution_id=e),
            queued("double", 1, "double", e, {"x": 2}),
            queued("increment-1", 1, "increment", e, {"x": 2}),
        ],
        [
            done("double", 4, execution_id=e),
            done("increment-1", 3, execution_id=e),
            queued("merge", 1, "merge", e, {"a": 4, "b": 3}),
        ],
        [done("merge", 7, execution_id=e), ExecutionSucceeded(outputs={"result": 7})],
    ]


def kinds(problems: list[Problem]) -> list[tuple[str, int | None]]:
    return [(problem.kind, problem.index) for problem in problems]


def test_a_clean_finished_history_has_no_problem() -> None:
    assert check_execution(history(EXECUTION, clean_run()), ended=True) == []
    assert check_lineage(history(EXECUTION, clean_run())) == [], "each input got the value its artifact holds"


def test_a_running_execution_is_reported_only_when_every_execution_should_have_ended() -> None:
    records = history(EXECUTION, clean_run()[:2])
    assert check_execution(records) == []
    [problem] = check_execution(records, ended=True)
    assert (problem.kind, problem.index, problem.execution_id) == ("not_ended", 1, EXECUTION)
    assert str(problem) == f"{EXECUTION} record 1 (sequence 2): not_ended: the execution has not ended"


def test_an_event_after_the_end_is_reported_but_a_rejection_is_not() -> None:
    rejected = CommandRejected(command_id="late", command_type="launch_execution.v1", reason="already exists")
    records = history(EXECUTION, [*clean_run(), [rejected], [queued("merge", 2, "merge")]])
    [problem] = check_execution(records, ended=True)
    assert (problem.kind, problem.index) == ("after_end", 5)
    assert "node_queued.v1 after the execution ended" in problem.message


def test_a_node_that_ends_twice_is_reported() -> None:
    run = clean_run()
    run[2].append(done("double", 5))
    assert kinds(check_execution(history(EXECUTION, run))) == [("node_ended_twice", 2)]


def test_attempts_numbered_with_a_gap_or_queued_twice_are_reported() -> None:
    failed = AttemptFailed(node="increment", attempt_id=attempt_id(EXECUTION, "increment", 1), error=BOOM)
    skipped = history(EXECUTION, [launch_events(), [failed, queued("increment", 3)]])
    [problem] = check_execution(skipped)
    assert (problem.kind, problem.index) == ("attempt_gap", 1)
    assert "queued attempt 3, expected attempt 2" in problem.message

    twice = history(EXECUTION, [launch_events(), [queued("increment")]])
    assert ("attempt_gap", 1) in kinds(check_execution(twice))


def test_an_attempt_that_was_never_queued_or_ends_twice_is_reported() -> None:
    started = AttemptStarted(node="increment", attempt_id=attempt_id(EXECUTION, "increment", 2), worker="w")
    assert kinds(check_execution(history(EXECUTION, [launch_events(), [started]]))) == [("unknown_attempt", 1)]

    failed = AttemptFailed(node="increment", attempt_id=attempt_id(EXECUTION, "increment", 1), error=BOOM)
    problems = check_execution(history(EXECUTION, [launch_events(), [failed], [failed]]))
    assert kinds(problems) == [("after_end", 2)]


def test_a_node_queued_before_its_inputs_succeeded_is_reported() -> None:
    """What a poisoned cache writes (issue 10 defect 1): a child queued although its parent's success was lost."""
    records = history(EXECUTION, [launch_events(), [queued("double", task="double")]])
    [problem] = check_execution(records)
    assert (problem.kind, problem.index) == ("queued_early", 1)
    assert "node 'double' before increment succeeded" in problem.message


def test_an_attempt_queued_for_another_cluster_than_decided_is_reported() -> None:
    """Nothing names a cluster in the diamond, and its launch recorded no default: its attempts' cluster is ''."""
    run = clean_run()
    run[1][1] = msgspec.structs.replace(queued("double", 1, "double"), cluster="gpu")
    [problem] = check_execution(history(EXECUTION, run))
    assert (problem.kind, problem.index) == ("wrong_cluster", 1)
    assert "queued for cluster 'gpu', not ''" in problem.message


def test_a_success_with_unfinished_nodes_is_reported() -> None:
    run = clean_run()
    run[2] = [done("double", 4), queued("merge", task="merge")]
    problems = check_execution(history(EXECUTION, run), ended=True)
    assert kinds(problems) == [("queued_early", 2), ("node_not_ended", 3)]
    assert "not node(s) increment-1" in problems[1].message


def test_an_unknown_node_is_reported() -> None:
    records = history(EXECUTION, [launch_events(), [done("nowhere", 1)]])
    assert kinds(check_execution(records)) == [("unknown_node", 1)]


def test_a_map_item_that_ends_twice_is_reported() -> None:
    _, events = launched(map_workflows.scaled, {"xs": [1, 2]}, T0, EXECUTION)
    item = MapItemSucceeded(
        node="scale", index=0, attempt_id=item_attempt_id(EXECUTION, "scale", 0, 1), outputs={"result": 2}
    )
    assert check_execution(history(EXECUTION, [events, [item]])) == []
    problems = check_execution(history(EXECUTION, [events, [item], [item]]))
    assert kinds(problems) == [("after_end", 2), ("node_ended_twice", 2)]


def test_a_broken_chain_is_reported_through_verify_chain() -> None:
    """A lost record breaks the chain, and what it held is missing from the history that follows."""
    records = history(EXECUTION, clean_run())
    assert kinds(check_execution([records[0], *records[2:]], ended=True)) == [
        ("chain_broken", 1),
        ("unknown_attempt", 1),
        ("unknown_attempt", 1),
        ("node_not_ended", 2),
    ]


def test_the_catalog_is_compared_with_a_replay_when_given() -> None:
    records = history(EXECUTION, clean_run())
    state = replay(records)
    row = catalog_view(state)
    assert check_execution(records, ended=True, catalog_execution=row) == []
    row.status = "running"
    assert kinds(check_execution(records, ended=True, catalog_execution=row)) == [("catalog_mismatch", None)]


async def test_audit_verify_all_reports_each_violation_with_its_execution_and_position(nats_url: str) -> None:
    """``plait audit verify --all`` runs the checker over every execution of the log and exits 1."""
    domain = f"inv-{uuid.uuid4().hex[:8]}"
    nc = await connect(nats_url, "invariants-test")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        early = clean_run("early")
        early[2] = [done("double", 4, execution_id="early"), queued("merge", 1, "merge", "early")]
        for execution_id, decisions in (
            ("good", clean_run("good")),
            ("early", early),
            ("running", clean_run("running")[:2]),
        ):
            for record in history(execution_id, decisions, "tests", domain):
                await js.publish(record.subject, record.data, headers={NATS_MSG_ID: record.msg_id})
    finally:
        await nc.close()
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_PROJECT": "tests", "PLAIT_DOMAIN": domain}
    done_ = await plait_command_async(["audit", "verify", "--all", "--no-catalog"], env)
    assert done_.returncode == 1, done_.stdout + done_.stderr
    lines = done_.stdout.splitlines()
    assert any(line.startswith("early record 2 (sequence ") and ": queued_early: " in line for line in lines), lines
    assert any(line.startswith("early record 3 (sequence ") and ": node_not_ended: " in line for line in lines)
    assert "3 executions, 2 problems (chains and invariants checked)" in done_.stderr
    ended = await plait_command_async(["audit", "verify", "--all", "--no-catalog", "--ended"], env)
    assert any(": not_ended: " in line and line.startswith("running ") for line in ended.stdout.splitlines())
    assert "3 executions, 3 problems" in ended.stderr


def test_a_launch_choosing_clusters_for_selectors_not_in_force_is_reported() -> None:
    """No task of ``unplaced`` is placed by a selector: a launch that records a choice for one is wrong."""
    _, events = launched(cluster_workflows.unplaced, {"x": 1}, T0, EXECUTION)
    first = events[0]
    assert isinstance(first, ExecutionLaunched)
    events[0] = msgspec.structs.replace(first, selected_clusters={"gpu=a100": "gpu-east"})
    [problem] = check_execution(history(EXECUTION, [events]))
    assert (problem.kind, problem.index) == ("wrong_cluster", 0)
    assert "selectors ['gpu=a100'], not []" in problem.message
