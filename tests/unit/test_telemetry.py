"""Trace context: read from headers, recorded by the launch, carried by the state, added to log lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg

from plait.core.commands import ReportAttemptStopped
from plait.core.decide import decide, decide_batch
from plait.core.events import ExecutionLaunched
from plait.core.state import Execution
from plait.errors import InputError
from plait.telemetry import (
    add_trace_ids,
    configure_tracing,
    inject,
    minted_traceparent,
    span,
    trace_id_of,
    traceparent_of,
)
from plait_scheduler.tracing import decision_parent, with_launch_traceparent
from tests import definitions
from tests.helpers.launching import resolved_launch

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
AT = datetime(2026, 1, 2, tzinfo=UTC)


class TestTraceparentOf:
    def test_a_well_formed_header_is_taken(self) -> None:
        """A W3C traceparent header is read as it is."""
        assert traceparent_of({"traceparent": TRACEPARENT}) == TRACEPARENT
        assert trace_id_of(TRACEPARENT) == "0af7651916cd43dd8448eb211c80319c"

    @pytest.mark.parametrize("value", ["", "garbage", TRACEPARENT.upper(), TRACEPARENT + "-extra", "x" * 10_000])
    def test_anything_else_is_no_context(self, value: str) -> None:
        """A malformed header (or a huge one) is never recorded in a launch."""
        assert traceparent_of({"traceparent": value}) == ""
        assert trace_id_of(value) == ""

    def test_no_headers_is_no_context(self) -> None:
        """A message without headers carries no context."""
        assert traceparent_of(None) == ""


def test_a_minted_context_is_the_same_for_the_same_execution() -> None:
    """A launch that came without a context gets one derived from its execution id, the same on every delivery."""
    assert minted_traceparent("exec-1") == minted_traceparent("exec-1") != minted_traceparent("exec-2")
    assert traceparent_of({"traceparent": minted_traceparent("exec-1")}) == minted_traceparent("exec-1")


def test_the_launch_records_its_context_and_the_state_carries_it() -> None:
    """``execution_launched.v1`` records the launch's traceparent, so a replayed execution links to its trace."""
    launch = resolved_launch(definitions.chain.spec, {"start": 1}, "exec-1")
    launch = msgspec.structs.replace(launch, command=msgspec.structs.replace(launch.command, traceparent=TRACEPARENT))
    outcome = decide_batch(None, [launch], AT)
    state, events = outcome.state, outcome.events
    [launched] = [event for event in events if isinstance(event, ExecutionLaunched)]
    assert launched.traceparent == TRACEPARENT
    assert isinstance(state, Execution) and state.traceparent == TRACEPARENT


def test_an_old_launch_without_a_context_still_decodes() -> None:
    """Histories written before traces decode, with no context recorded."""
    launch = resolved_launch(definitions.chain.spec, {"start": 1}, "exec-1")
    events = decide(None, launch)
    raw: dict[str, Any] = msgspec.to_builtins(events[0])
    raw.pop("traceparent")
    decoded = msgspec.json.decode(msgspec.json.encode(raw), type=ExecutionLaunched)
    assert decoded.traceparent == ""


class TestAddTraceIds:
    def test_a_line_logged_within_a_span_carries_its_ids(self) -> None:
        """Within a span (here one received, in a process that records none), a line carries trace and span id."""
        with span("received", parent=TRACEPARENT):
            line = add_trace_ids(None, "info", {"event": "x"})
        assert line == {"event": "x", "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}

    def test_a_line_outside_any_span_is_left_alone(self) -> None:
        """Without a current span nothing is added."""
        assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}

    def test_a_line_naming_its_own_trace_keeps_it(self) -> None:
        """A line that says which trace it belongs to is not overwritten."""
        with span("received", parent=TRACEPARENT):
            assert add_trace_ids(None, "info", {"event": "x", "trace_id": "t"}) == {"event": "x", "trace_id": "t"}


def test_a_received_context_is_passed_on_in_headers() -> None:
    """A process that records no spans still passes the context it received on to the messages it sends."""
    with span("received", parent=TRACEPARENT):
        headers = inject({"Nats-Msg-Id": "m"})
    assert trace_id_of(traceparent_of(headers)) == trace_id_of(TRACEPARENT)
    assert inject({}) == {}, "nothing without a current span"


def test_an_unknown_exporter_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in OTEL_TRACES_EXPORTER is an error naming it, not silence."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "consle")
    with pytest.raises(InputError, match="'consle'"):
        configure_tracing("plait-test")


def test_tracing_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without OTEL_TRACES_EXPORTER or PLAIT_TRACES_FILE no tracer provider is set up."""
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("PLAIT_TRACES_FILE", raising=False)
    assert configure_tracing("plait-test") is False


def message(headers: dict[str, str] | None = None) -> Msg:
    return Msg(_client=None, subject="plait.cmd.tests.dev.exec-1.result", headers=headers)  # type: ignore[arg-type]


class TestSchedulerContext:
    def test_a_launch_records_the_context_its_message_carries(self) -> None:
        """The scheduler records the launch message's traceparent on the command it decides."""
        command = resolved_launch(definitions.chain.spec, {"start": 1}, "exec-1").command
        assert with_launch_traceparent(command, message({"traceparent": TRACEPARENT})).traceparent == TRACEPARENT

    def test_a_launch_without_one_records_none_where_the_scheduler_does_not_trace(self) -> None:
        """Tracing off (as in these tests), a launch without a context records none."""
        command = resolved_launch(definitions.chain.spec, {"start": 1}, "exec-1").command
        assert with_launch_traceparent(command, message()).traceparent == ""

    def test_a_decision_joins_the_context_of_its_commands_else_of_its_execution(self) -> None:
        """A command's own context first; a command without one is decided in the execution's recorded context."""
        launch = resolved_launch(definitions.chain.spec, {"start": 1}, "exec-1")
        outcome = decide_batch(None, [launch], AT)
        assert outcome.state is not None
        report = ReportAttemptStopped(
            command_id="c", execution_id="exec-1", node="n", attempt_id="a", worker="w", reason="r"
        )
        other = minted_traceparent("other")
        assert decision_parent([(message({"traceparent": other}), report)], outcome.state) == other
        outcome.state.traceparent = TRACEPARENT
        assert decision_parent([(message(), report)], outcome.state) == TRACEPARENT
        assert decision_parent([(message(), report)], None) == ""
