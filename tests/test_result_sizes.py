"""Results near a server's ``max_payload``, which counts a message's headers as well as its payload (nats-py checks
the payload alone, and a message the server refuses closes the connection for good). On a server with nats-server's
own 1 MiB limit, as one given by URL may have: several results whose payload fits but not with their headers are
stored all the same, and a lone result that does not fit with its headers is reported as too large."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import structlog
from nats.js import JetStreamContext

from plait import codec
from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait.core.commands import Command, ReportAttemptResult, ReportAttemptResults
from plait.core.dispatch import Dispatch
from plait.core.ids import content_version
from plait.protocol import subjects
from plait_cli.embedded import NatsServer
from plait_executor.attempt import AttemptOutcome
from plait_executor.reports import report_result, result_command
from plait_executor.results import MAX_BYTES_PER_COMMAND, ResultReporter
from tests import executor_tasks
from tests.helpers.dispatches import attempts_of_one_execution

STOCK_MAX_PAYLOAD = 1024 * 1024  # nats-server's own default
UNDER = 10  # the payload is this much under max_payload: its headers are more


@pytest.fixture
async def stock_js(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    with NatsServer.start(tmp_path / "nats", max_payload=STOCK_MAX_PAYLOAD) as server:
        nc = await connect(server.url, name="result-sizes")
        try:
            js = nc.jetstream()
            await ensure_streams(js)
            yield js
        finally:
            await nc.close()


def outcomes(count: int, last: int) -> list[AttemptOutcome]:
    return [AttemptOutcome(outputs={"result": "x" * size}) for size in [50_000] * (count - 1) + [last]]


def together(dispatches: list[Dispatch], results: list[AttemptOutcome]) -> ReportAttemptResults:
    commands = [result_command(d, "executor-1", o) for d, o in zip(dispatches, results, strict=True)]
    return ReportAttemptResults(
        command_id="results:" + content_version([c.command_id for c in commands]),
        execution_id=dispatches[0].execution_id,
        results=tuple(commands),
    )


async def stored_commands(js: JetStreamContext) -> list[Command]:
    state = (await js.stream_info(subjects.COMMANDS_STREAM)).state
    stored = [await js.get_msg(subjects.COMMANDS_STREAM, seq) for seq in range(state.first_seq, state.last_seq + 1)]
    return [codec.command_decoder.decode(raw.data or b"") for raw in stored]


def results_in(commands: list[Command]) -> list[ReportAttemptResult]:
    results: list[ReportAttemptResult] = []
    for command in commands:
        results += command.results if isinstance(command, ReportAttemptResults) else [command]  # type: ignore[list-item]
    return results


async def test_results_whose_payload_fits_but_not_with_headers_are_stored(stock_js: JetStreamContext) -> None:
    dispatches = attempts_of_one_execution(executor_tasks.add.spec, 20)
    base = len(codec.encode(together(dispatches, outcomes(20, 0))))
    results = outcomes(20, STOCK_MAX_PAYLOAD - UNDER - base)
    assert len(codec.encode(together(dispatches, results))) == STOCK_MAX_PAYLOAD - UNDER
    summed = sum(
        len(codec.encode(result_command(d, "executor-1", o))) for d, o in zip(dispatches, results, strict=True)
    )
    assert summed < MAX_BYTES_PER_COMMAND, "under the reporter's own bound: only the server's limit can split them"

    reporter = ResultReporter(stock_js, "executor-1", linger=30.0)
    for dispatch in dispatches:
        reporter.expect(dispatch)
    with anyio.fail_after(20.0):
        async with anyio.create_task_group() as tg:
            for dispatch, outcome in zip(dispatches, results, strict=True):
                reporter.started(dispatch)
                tg.start_soon(reporter.report, dispatch, outcome, structlog.get_logger())
                await anyio.wait_all_tasks_blocked()

    stored = results_in(await stored_commands(stock_js))
    assert sorted(r.attempt_id for r in stored) == sorted(d.attempt_id for d in dispatches)
    assert all(r.error is None for r in stored)
    assert stock_js._nc.is_connected, "no message the server refused"


async def test_a_lone_result_that_fits_only_without_its_headers_is_reported_too_large(
    stock_js: JetStreamContext,
) -> None:
    (dispatch,) = attempts_of_one_execution(executor_tasks.add.spec, 1)
    empty = len(codec.encode(result_command(dispatch, "executor-1", AttemptOutcome(outputs={"result": ""}))))
    outcome = AttemptOutcome(outputs={"result": "x" * (STOCK_MAX_PAYLOAD - UNDER - empty)})
    assert len(codec.encode(result_command(dispatch, "executor-1", outcome))) == STOCK_MAX_PAYLOAD - UNDER

    with anyio.fail_after(20.0):
        await report_result(stock_js, dispatch, "executor-1", outcome, structlog.get_logger())

    (stored,) = results_in(await stored_commands(stock_js))
    assert stored.attempt_id == dispatch.attempt_id
    assert stored.error is not None
    assert (stored.error.kind, stored.error.error_type) == ("system", "OutputTooLarge")
    assert "do not fit in one message" in stored.error.message
    assert stock_js._nc.is_connected
