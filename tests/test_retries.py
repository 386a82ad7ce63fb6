"""Delayed retries: the state machine schedules them, a JetStream timer says when they are due."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from plait.audit import verify_catalog
from plait.client import AsyncClient
from plait.core.commands import ReportAttemptResult, RetryDue
from plait.core.decide import MAX_RETRY_DELAY_SECONDS, decide_batch, retry_delay
from plait.core.events import AttemptFailed, NodeQueued, RetryScheduled, TaskError
from plait.core.state import Execution
from plait.sdk import Workflow
from tests import retry_workflows
from tests.helpers.launching import launched as launch
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

AT = datetime(2026, 1, 2, tzinfo=UTC)
BOOM = TaskError(kind="user", message="boom")
DEADLINE = 60.0


def launched(wf: Workflow[..., Any], inputs: dict[str, Any]) -> tuple[Execution, list[Any]]:
    return launch(wf, inputs, AT)


def fail(state: Execution, queued: NodeQueued) -> list[Any]:
    command = ReportAttemptResult(
        command_id=f"r-{queued.attempt_id}",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w",
        error=BOOM,
    )
    return decide_batch(state, [command], AT).events


def due(node: str, attempt: int, index: int = -1) -> RetryDue:
    return RetryDue(
        command_id=f"due-{node}-{index}-{attempt}", execution_id="e", node=node, attempt=attempt, index=index
    )


def test_a_failed_attempt_waits_its_delay_doubling_for_each_retry() -> None:
    state, events = launched(retry_workflows.retried_later, {"directory": "/nowhere"})
    [first] = [e for e in events if isinstance(e, NodeQueued)]
    started, scheduled = fail(state, first)[-2:]
    assert isinstance(started, AttemptFailed)
    assert scheduled == RetryScheduled(node="fails_first", attempt=2, delay_seconds=1.0)
    node = state.nodes["fails_first"]
    assert (node.status, node.retry_at) == ("queued", AT + timedelta(seconds=1))
    [second] = decide_batch(state, [due("fails_first", 2)], AT).events
    assert isinstance(second, NodeQueued) and second.attempt == 2 and second.inputs == first.inputs
    assert state.nodes["fails_first"].retry_at is None
    assert decide_batch(state, [due("fails_first", 2)], AT).events == [], "a timer firing twice queues once"
    assert fail(state, second)[-1] == RetryScheduled(node="fails_first", attempt=3, delay_seconds=2.0)
    assert decide_batch(state, [due("fails_first", 2)], AT).events == [], "a stale timer changes nothing"


def test_a_map_item_retries_after_its_delay_while_the_others_go_on() -> None:
    state, events = launched(retry_workflows.items_retried_later, {"directory": "/d", "names": ["a", "b"]})
    first_a = next(e for e in events if isinstance(e, NodeQueued) and e.index == 0)
    scheduled = fail(state, first_a)[-1]
    assert scheduled == RetryScheduled(node="fails_first", attempt=2, delay_seconds=1.0, index=0)
    assert state.nodes["fails_first"].status == "running"
    [again] = decide_batch(state, [due("fails_first", 2, index=0)], AT).events
    assert isinstance(again, NodeQueued) and (again.index, again.attempt, again.inputs["name"]) == (0, 2, "a")


def test_delays_are_capped() -> None:
    task = retry_workflows.fails_first.spec
    assert [retry_delay(task, n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert retry_delay(task, 40) == MAX_RETRY_DELAY_SECONDS


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def test_a_retry_runs_once_its_delay_is_over(client: AsyncClient, tmp_path: Path) -> None:
    execution_id = (await client.launch(retry_workflows.retried_later, {"directory": str(tmp_path)})).id
    state = await final_state(client, execution_id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": "single"}
    decisions = [stored.decision async for stored in client.events(execution_id)]
    failed_at = next(d.at for d in decisions if any(isinstance(e, AttemptFailed) for e in d.events))
    requeued_at = next(d.at for d in decisions if any(isinstance(e, NodeQueued) and e.attempt == 2 for e in d.events))
    assert requeued_at - failed_at >= timedelta(seconds=1), "the second attempt waited for its delay"
    assert [a.attempt for a in state.nodes["fails_first"].attempts] == [1, 2]
    shown = await client.show_execution(execution_id, min_sequence=state.last_sequence)
    assert verify_catalog(state, shown) == []
