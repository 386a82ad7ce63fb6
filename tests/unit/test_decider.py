"""The scheduler's ``Decider`` on an in-memory event log: deciding, conflicts and failed appends, no server."""

from __future__ import annotations

import msgspec
import pytest

from plait.adapters.event_log import DecisionTooLarge, InMemoryEventLog
from plait.core.commands import LaunchExecution, ReportAttemptResult, ReportAttemptStarted, ResolvedLaunch
from plait.core.state import Execution
from plait.errors import TransportError
from plait.protocol import subjects
from plait_scheduler.cache import StateCache
from plait_scheduler.decisions import Decider
from tests import workflows
from tests.helpers.launches import add_two_launch

EXECUTION = "unit"
SUBJECT = subjects.execution_subject("p", "d", EXECUTION)


def started(attempt_id: str) -> ReportAttemptStarted:
    return ReportAttemptStarted(
        command_id="started", execution_id=EXECUTION, node="add", attempt_id=attempt_id, worker="w"
    )


def result(attempt_id: str) -> ReportAttemptResult:
    return ReportAttemptResult(
        command_id="result",
        execution_id=EXECUTION,
        node="add",
        attempt_id=attempt_id,
        worker="w",
        outputs={"result": 3},
    )


class FailingOnce(InMemoryEventLog):
    """An in-memory log whose next append fails as a lost connection would, storing nothing."""

    fail_next = False

    async def append_encoded(self, subject: str, data: bytes, expected_sequence: int) -> tuple[int, str]:
        if self.fail_next:
            self.fail_next = False
            raise TransportError("the connection was lost")
        return await super().append_encoded(subject, data, expected_sequence)


async def launched(decider: Decider) -> str:
    """Launch the execution; the attempt id of its first node."""
    outcome = await decider.decide(SUBJECT, [add_two_launch(EXECUTION)])
    assert outcome.state is not None
    return outcome.state.nodes["add"].attempts[0].attempt_id


async def test_a_launch_is_decided_appended_and_cached() -> None:
    log, cache = InMemoryEventLog(), StateCache()
    decider = Decider(log, cache, "r1")
    outcome = await decider.decide(SUBJECT, [add_two_launch(EXECUTION)])
    assert [type(event).__name__ for event in outcome.events][:2] == ["ExecutionLaunched", "NodeQueued"]
    stored = [stored async for stored in log.read(SUBJECT)]
    assert [(s.decision.replica, s.decision.commands) for s in stored] == [("r1", ("launch",))]
    cached = cache.take(SUBJECT)
    assert cached is not None
    assert (cached.last_sequence, cached.last_digest) == (stored[0].sequence, stored[0].digest)
    assert decider.decisions == 1 and decider.conflicts == 0


class CountingLoads(InMemoryEventLog):
    """An in-memory log that counts the reads of a state from it."""

    loads = 0

    async def load(self, subject: str, state: Execution | None = None, *, at_least: int = 0) -> Execution | None:
        self.loads += 1
        return await super().load(subject, state, at_least=at_least)


async def test_a_launch_is_appended_without_reading_its_log_first() -> None:
    log = CountingLoads()
    decider = Decider(log, StateCache(), "r1")
    await launched(decider)
    assert (log.loads, decider.conflicts, decider.decisions) == (0, 0, 1)


async def test_a_launch_of_an_execution_that_exists_conflicts_reads_the_log_and_appends_nothing() -> None:
    """Another replica (or this one, before a restart) launched it: the append expecting a new subject conflicts,
    and the launch decided again on the log's state changes nothing."""
    log = CountingLoads()
    await launched(Decider(log, StateCache(), "r1"))
    again = Decider(log, StateCache(), "r2")
    outcome = await again.decide(SUBJECT, [add_two_launch(EXECUTION)])
    assert (outcome.events, outcome.rejections) == ([], [])
    assert (log.loads, again.conflicts, again.decisions) == (1, 1, 0)
    assert [s.decision.replica async for s in log.read(SUBJECT)] == ["r1"]


async def test_a_refused_launch_is_refused_only_once_its_log_shows_no_execution() -> None:
    """A launch that would be refused (bad inputs) of an execution that exists is not refused: it changes nothing."""
    log = CountingLoads()
    await launched(Decider(log, StateCache(), "r1"))
    bad = add_two_launch(EXECUTION)
    bad = msgspec.structs.replace(bad, command=msgspec.structs.replace(bad.command, inputs={"a": "one", "b": 2}))
    fresh = await Decider(CountingLoads(), StateCache(), "r2").decide(SUBJECT, [bad])
    assert [reason for _, reason in fresh.rejections] != [], "on a new subject it is refused"
    outcome = await Decider(log, StateCache(), "r2").decide(SUBJECT, [bad])
    assert (outcome.events, outcome.rejections, log.loads) == ([], [], 1)


class Limited(CountingLoads):
    """An in-memory log that refuses a decision over ``limit`` bytes as ``EventStore`` does: before it is sent, so
    before the check that the subject is new."""

    limit = 8 * 1024

    async def append_encoded(self, subject: str, data: bytes, expected_sequence: int) -> tuple[int, str]:
        if len(data) > self.limit:
            raise DecisionTooLarge(len(data), self.limit)
        return await super().append_encoded(subject, data, expected_sequence)


def large_launch() -> ResolvedLaunch:
    """A launch of the execution (the same id as ``launched``'s) whose decision is over ``Limited.limit``."""
    command = LaunchExecution(
        command_id="launch:again",
        execution_id=EXECUTION,
        project="p",
        domain="d",
        workflow=workflows.failing.name,
        version=workflows.failing.spec.version,
        inputs={"message": "x" * 16 * 1024},
    )
    return ResolvedLaunch(command=command, workflow=workflows.failing.spec)


async def test_a_too_large_launch_of_an_execution_that_exists_changes_nothing() -> None:
    """Decided as new, its decision is refused for its size before anything checks the subject: the log is read and
    the launch decided again on the execution there (recorded as refused: it exists), instead of failing that
    execution with the launch's reason."""
    log = Limited()
    await launched(Decider(log, StateCache(), "r1"))
    again = Decider(log, StateCache(), "r2")
    outcome = await again.decide(SUBJECT, [large_launch()])
    assert [type(event).__name__ for event in outcome.events] == ["CommandRejected"]
    assert "already exists" in outcome.events[0].reason  # type: ignore[union-attr]
    state = await log.load(SUBJECT)
    assert state is not None and (state.status, state.error) == ("running", None)


async def test_a_too_large_launch_of_a_new_execution_is_refused_with_its_size() -> None:
    log = Limited()
    outcome = await Decider(log, StateCache(), "r1").decide(SUBJECT, [large_launch()])
    [(_, reason)] = outcome.rejections
    assert "too large" in reason and outcome.events == []
    assert await log.load(SUBJECT) is None


async def test_a_conflict_rebuilds_the_state_from_the_log_and_decides_again() -> None:
    """Another replica decided on the execution meanwhile: the stale cached state's append conflicts, and the
    command is decided again on the state the log holds."""
    log = InMemoryEventLog()
    first, other = Decider(log, StateCache(), "r1"), Decider(log, StateCache(), "r2")
    attempt = await launched(first)
    await other.decide(SUBJECT, [started(attempt)])
    outcome = await first.decide(SUBJECT, [result(attempt)])
    assert first.conflicts == 1
    assert [type(event).__name__ for event in outcome.events] == ["NodeSucceeded", "ExecutionSucceeded"]
    stored = [stored async for stored in log.read(SUBJECT)]
    assert [s.decision.replica for s in stored] == ["r1", "r2", "r1"]
    assert stored[2].decision.previous == stored[1].digest
    state = await log.load(SUBJECT)
    assert state is not None and state.status == "succeeded" and state.outputs == {"result": 3}


async def test_a_failed_append_drops_the_cached_state() -> None:
    """The state decided on is cached only once its decision is stored: after a failed append, the command
    (redelivered) is decided on the state the log holds, not on one that already holds its events."""
    log, cache = FailingOnce(), StateCache()
    decider = Decider(log, cache, "r1")
    attempt = await launched(decider)
    log.fail_next = True
    with pytest.raises(TransportError):
        await decider.decide(SUBJECT, [result(attempt)])
    assert cache.take(SUBJECT) is None
    assert len([stored async for stored in log.read(SUBJECT)]) == 1
    redelivered = await decider.decide(SUBJECT, [result(attempt)])
    assert [type(event).__name__ for event in redelivered.events] == [
        "AttemptStarted",
        "NodeSucceeded",
        "ExecutionSucceeded",
    ]
