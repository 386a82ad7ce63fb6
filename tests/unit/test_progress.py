"""The live view and the transition lines of ``plait run``, for cached nodes and map nodes."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from plait.core.commands import ReportAttemptResult, ReportAttemptStarted, ReportCacheLookup
from plait.core.decide import decide_batch
from plait.core.events import NodeQueued
from plait.core.state import Execution
from plait.sdk import Workflow
from plait_cli.progress import print_transition, render
from tests import cache_workflows, map_workflows, workflows
from tests.helpers.launching import launched as launch

AT = datetime(2026, 1, 2, tzinfo=UTC)


def launched(wf: Workflow[..., Any], inputs: dict[str, Any]) -> Execution:
    return launch(wf, inputs, AT)[0]


def text_of(state: Execution) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(render(state, AT))
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def test_a_cached_node_and_a_waiting_look_up_are_shown_as_such() -> None:
    state = launched(cache_workflows.squared_then_doubled, {"x": 2})
    node = state.nodes["slow_square"]
    held = ReportCacheLookup(
        command_id="h",
        execution_id="e",
        node=node.id,
        cache_key=node.cache_key,
        round=1,
        outcome="held",
        holder_execution="other",
        holder_node="slow_square",
        until=AT,
    )
    decide_batch(state, [held], AT)
    assert "waiting for other/slow_square" in text_of(state)
    hit = ReportCacheLookup(
        command_id="x",
        execution_id="e",
        node=node.id,
        cache_key=node.cache_key,
        round=2,
        outcome="hit",
        outputs={"result": 4},
    )
    released = ReportCacheLookup(
        command_id="r", execution_id="e", node=node.id, cache_key=node.cache_key, round=1, outcome="released"
    )
    decide_batch(state, [released, hit], AT)
    assert "succeeded (cached)" in text_of(state)


def item_result(attempt_id: str) -> ReportAttemptResult:
    """A map item of ``scale`` that succeeded."""
    return ReportAttemptResult(
        command_id=attempt_id, execution_id="e", node="scale", attempt_id=attempt_id, worker="w", outputs={"result": 0}
    )


def test_a_map_node_shows_its_items_and_prints_a_line_per_tenth() -> None:
    state = launched(map_workflows.scaled, {"xs": list(range(20))})
    console = Console(file=io.StringIO(), width=200)
    seen: dict[str, str] = {}
    pending = list(state.nodes["scale"].item_attempts.values())
    while pending:
        attempt = pending.pop(0)
        result = item_result(attempt.attempt_id)
        events = decide_batch(state, [result], AT).events
        queued = [e for e in events if isinstance(e, NodeQueued)]
        pending += [state.nodes["scale"].item_attempts[e.index] for e in queued]
        print_transition(console, seen, state)
        if state.nodes["scale"].map_finished == 7:
            assert "7/20 items" in text_of(state)
    assert isinstance(console.file, io.StringIO)
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "scale: running, 0% of 20 items done"
    assert lines[-1] == "scale: succeeded"
    assert len(lines) == 11


def text_at(state: Execution, now: datetime) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(render(state, now))
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def test_a_running_tasks_clock_is_the_time_since_it_started_at_each_drawing() -> None:
    state = launched(workflows.add_two, {"a": 1, "b": 2})
    node = next(iter(state.nodes.values()))
    started = ReportAttemptStarted(
        command_id="s", execution_id="e", node=node.id, attempt_id=node.attempts[0].attempt_id, worker="w"
    )
    decide_batch(state, [started], AT)
    assert "5.00s" in text_at(state, AT + timedelta(seconds=5))
    assert "3605.00s" in text_at(state, AT + timedelta(hours=1, seconds=5))


def test_a_map_node_shows_a_bar_of_its_items_and_their_rate() -> None:
    state = launched(map_workflows.scaled, {"xs": list(range(20))})
    for attempt in list(state.nodes["scale"].item_attempts.values())[:5]:
        result = item_result(attempt.attempt_id)
        decide_batch(state, [result], AT)
    shown = text_at(state, AT + timedelta(seconds=10))
    assert "5/20 items, 0.5/s" in shown and "━" in shown
    assert "10.00s" in shown
