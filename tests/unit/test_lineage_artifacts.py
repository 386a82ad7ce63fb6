"""Lineage as artifacts (``plait.core.lineage``): each output of each attempt is an artifact, and each node input
names the artifact it read, traced through its binding."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from plait import codec, map_task, task, workflow
from plait.audit_lineage import check_lineage
from plait.core.commands import Command, ReportAttemptResult, ReportAttemptStarted, ResolvedLaunch
from plait.core.decide import decide_batch
from plait.core.events import Decision, NodeCacheHit, NodeQueued, TaskError
from plait.core.ids import attempt_id, value_hash
from plait.core.lineage import ExecutionLineage, Use, artifact_id, launch_artifact_id, lineage_of, producers_read
from plait.core.state import Execution
from plait.core.types import ListOf, Primitive
from plait.replay import Record
from tests.helpers.launching import resolved_launch

AT = datetime(2031, 1, 2, tzinfo=UTC)
INT = Primitive("int")


@task(retries=1)
def double(x: int) -> int:
    return 2 * x


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def fan_in(x: int) -> int:
    d = double(x)
    return total([add(d, 1), d, 5])


class Run:
    """An execution of ``fan_in`` decided by the pure core, one decision per command."""

    def __init__(self, execution_id: str, x: int) -> None:
        self.execution_id = execution_id
        self.state: Execution | None = None
        self.decisions: list[Decision] = []
        self.decide(resolved_launch(fan_in.spec, {"x": x}, execution_id))

    def decide(self, command: Command | ResolvedLaunch) -> None:
        outcome = decide_batch(self.state, [command], AT)
        self.state = outcome.state
        events = tuple(outcome.events)
        decision = Decision(execution_id=self.execution_id, at=AT, replica="t", commands=(), previous="", events=events)
        self.decisions.append(decision)

    def attempt(self, node: str, attempt: int = 1, outputs: dict[str, Any] | None = None) -> str:
        """Run an attempt of ``node``: it fails without ``outputs``. Returns its id."""
        aid = attempt_id(self.execution_id, node, attempt)
        here = {"execution_id": self.execution_id, "node": node, "attempt_id": aid, "worker": "w"}
        self.decide(ReportAttemptStarted(command_id=f"s:{aid}", **here))
        error = None if outputs is not None else TaskError(kind="user", message="no")
        self.decide(ReportAttemptResult(command_id=f"r:{aid}", outputs=outputs, error=error, **here))
        return aid


def finished(execution_id: str, x: int) -> Run:
    """``fan_in(x)`` to its end, ``double`` failing once first."""
    run = Run(execution_id, x)
    run.attempt("double", 1)
    run.attempt("double", 2, {"result": 2 * x})
    run.attempt("add", 1, {"result": 2 * x + 1})
    run.attempt("total", 1, {"result": 4 * x + 6})
    return run


def test_each_output_is_an_artifact_of_the_attempt_that_made_it() -> None:
    """After a retry, ``double``'s output is the artifact of its second attempt; the failed one made none."""
    lineage = lineage_of(finished("e1", 3).decisions)
    assert lineage is not None
    made = {(a.node, a.name): a for a in lineage.artifacts.values() if a.producer != "constant"}
    second = attempt_id("e1", "double", 2)
    assert made["double", "result"].attempt_id == second
    assert made["double", "result"].id == artifact_id("e1", "double", second, "result")
    assert (made["double", "result"].value_hash, made["double", "result"].type) == (value_hash(6), INT)
    assert made["", "x"].producer == "launch" and made["", "x"].id == launch_artifact_id("e1", "x")
    assert {a.attempt_id for a in made.values()} == {
        "",
        second,
        attempt_id("e1", "add", 1),
        attempt_id("e1", "total", 1),
    }


def test_each_input_reads_the_artifact_its_binding_names() -> None:
    lineage = lineage_of(finished("e1", 3).decisions)
    assert lineage is not None
    by_place = {(a.node, a.name): a.id for a in lineage.artifacts.values()}
    reads = {(u.node, u.name): u.artifact_id for u in lineage.uses.values()}
    assert reads == {
        ("double", "x"): by_place["", "x"],
        ("add", "a"): by_place["double", "result"],
        ("add", "b"): by_place["add", "b"],  # a constant of its own
        ("total", "xs[0]"): by_place["add", "result"],
        ("total", "xs[1]"): by_place["double", "result"],
        ("total", "xs[2]"): by_place["total", "xs[2]"],
        ("", "result"): by_place["total", "result"],  # the workflow's output
    }
    constants = {a.name: a for a in lineage.artifacts.values() if a.producer == "constant"}
    assert {name: a.value_hash for name, a in constants.items()} == {"b": value_hash(1), "xs[2]": value_hash(5)}
    assert constants["xs[2]"].type == INT  # an item of list[int]


def test_equal_values_of_two_executions_are_different_artifacts() -> None:
    """Both read the constant 1 and both got x=3: same hashes, no shared artifact."""
    first, second = (lineage_of(finished(e, 3).decisions) for e in ("e1", "e2"))
    assert first is not None and second is not None
    assert not set(first.artifacts) & set(second.artifacts)
    assert {a.value_hash for a in first.artifacts.values()} == {a.value_hash for a in second.artifacts.values()}


def test_a_cache_hit_is_an_artifact_that_names_its_source() -> None:
    run = Run("e3", 3)
    hit = NodeCacheHit(node="double", cache_key="k", outputs={"result": 6}, source_execution="e1", source_node="double")
    lineage = ExecutionLineage("e3", fan_in.spec)
    for decision in run.decisions:
        for event in decision.events:
            lineage.apply(event)
    lineage.apply(hit)
    [cached] = [a for a in lineage.artifacts.values() if a.producer == "cache"]
    assert (cached.source_execution, cached.source_node, cached.attempt_id) == ("e1", "double", "")
    assert cached.id == artifact_id("e3", "double", "cache:e1/double", "result")


def test_a_later_batch_reads_the_outputs_made_before_it() -> None:
    """The catalog folds an execution batch by batch: what earlier batches made is handed in as ``produced``."""
    run = finished("e1", 3)
    whole = lineage_of(run.decisions)
    assert whole is not None
    before, after = run.decisions[:5], run.decisions[5:]
    events = [event for decision in after for event in decision.events]
    needed = producers_read(fan_in.spec, events)
    assert needed == {"double", "add", "total"}
    early = lineage_of(before)
    assert early is not None
    produced = {(a.node, a.name): a.id for a in early.artifacts.values() if a.producer == "attempt"}
    late = ExecutionLineage("e1", fan_in.spec, produced=produced)
    for event in events:
        late.apply(event)
    assert {**early.uses, **late.uses} == whole.uses
    assert {**early.artifacts, **late.artifacts} == whole.artifacts


@task
def square(x: int) -> int:
    return x * x


@workflow
def squares(xs: list[int]) -> list[int]:
    return map_task(square)(x=xs)


def test_a_map_nodes_output_is_one_artifact_of_lists() -> None:
    launch = resolved_launch(squares.spec, {"xs": [1, 2]}, "m")
    outcome = decide_batch(None, [launch], AT)
    state, events = outcome.state, list(outcome.events)
    for index in (0, 1):
        aid = f"m/square[{index}]/1"
        here = {"execution_id": "m", "node": "square", "attempt_id": aid, "worker": "w"}
        step = decide_batch(state, [ReportAttemptStarted(command_id=f"s{index}", **here)], AT)
        state, events = step.state, events + list(step.events)
        result = ReportAttemptResult(command_id=f"r{index}", outputs={"result": (index + 1) ** 2}, **here)
        step = decide_batch(state, [result], AT)
        state, events = step.state, events + list(step.events)
    decision = Decision(execution_id="m", at=AT, replica="t", commands=(), previous="", events=tuple(events))
    lineage = lineage_of([decision])
    assert lineage is not None
    [mapped] = [a for a in lineage.artifacts.values() if a.producer == "map"]
    assert (mapped.node, mapped.name, mapped.value_hash, mapped.type) == (
        "square",
        "result",
        value_hash([1, 4]),
        ListOf(INT),
    )
    assert lineage.uses["", "result"] == Use(execution_id="m", node="", name="result", artifact_id=mapped.id)
    assert lineage.uses["square", "x"].artifact_id == launch_artifact_id("m", "xs")


def records_of(decisions: list[Decision]) -> list[Record]:
    subject = "plait.ev.tests.dev.e1"
    return [Record(sequence=i, subject=subject, data=codec.encode(d)) for i, d in enumerate(decisions, start=1)]


def test_a_whole_history_keeps_the_lineage_invariants() -> None:
    assert check_lineage(records_of(finished("e1", 3).decisions)) == []


def test_an_input_that_got_another_value_than_its_artifact_is_reported() -> None:
    """A forged history: ``add`` says it got 999 where ``double`` made 6."""
    history = finished("e1", 3).decisions
    forged = [
        msgspec.structs.replace(
            decision,
            events=tuple(
                msgspec.structs.replace(e, inputs={**e.inputs, "a": 999})
                if isinstance(e, NodeQueued) and e.node == "add"
                else e
                for e in decision.events
            ),
        )
        for decision in history
    ]
    [problem] = check_lineage(records_of(forged))
    assert (problem.kind, problem.message) == ("lineage", "node 'add': input 'a' got a value other than its artifact's")
