"""The commands an executor sends about an attempt, published until JetStream has stored them."""

from __future__ import annotations

import anyio
import nats.errors
from nats.js import JetStreamContext
from structlog.typing import FilteringBoundLogger

from plait.adapters.commands import publish_command, send_command
from plait.core.commands import ReportAttemptResult, ReportAttemptResults, ReportAttemptStarted, ReportAttemptStopped
from plait.core.dispatch import Dispatch
from plait_executor.attempt import AttemptOutcome, system_error

FIRST_RETRY_SECONDS = 0.1
LONGEST_RETRY_SECONDS = 5.0
SENT_ACK_SECONDS = 5.0  # how long a sent command's acknowledgement is awaited before it is published again


def started_command(dispatch: Dispatch, worker: str) -> ReportAttemptStarted:
    return ReportAttemptStarted(
        command_id=f"{dispatch.attempt_id}:started",
        execution_id=dispatch.execution_id,
        node=dispatch.node,
        attempt_id=dispatch.attempt_id,
        worker=worker,
    )


def result_command(dispatch: Dispatch, worker: str, outcome: AttemptOutcome) -> ReportAttemptResult:
    return ReportAttemptResult(
        command_id=f"{dispatch.attempt_id}:result",
        execution_id=dispatch.execution_id,
        node=dispatch.node,
        attempt_id=dispatch.attempt_id,
        worker=worker,
        outputs=outcome.outputs if outcome.error is None else None,
        error=outcome.error,
        output=outcome.output_ref,
    )


async def report_started_pipelined(
    js: JetStreamContext, dispatch: Dispatch, worker: str, log: FilteringBoundLogger, sent: anyio.Event
) -> None:
    """Send ``started``, set ``sent`` once it is on the wire (a result sent after it is stored after it), then
    wait until it is stored, publishing it again if need be."""
    command = started_command(dispatch, worker)
    try:
        with anyio.fail_after(SENT_ACK_SECONDS):
            stored = await send_command(js, command, dispatch.project, dispatch.domain)
            sent.set()
            await stored
        return
    except (nats.errors.Error, TimeoutError) as exc:
        log.warning("publish_retry", command=command.command_id, error=repr(exc), retry_in=0)
    finally:
        sent.set()
    await publish_until_stored(js, command, dispatch, log)


async def report_result(
    js: JetStreamContext,
    dispatch: Dispatch,
    worker: str,
    outcome: AttemptOutcome,
    log: FilteringBoundLogger,
    scope: str = "",
) -> None:
    """Store the attempt's result; outputs too large for a message are reported as a system error instead."""
    command = result_command(dispatch, worker, outcome)
    try:
        await publish_until_stored(js, command, dispatch, log, scope)
    except nats.errors.MaxPayloadError as exc:
        log.error("result_too_large", error=str(exc))
        too_large = AttemptOutcome(
            error=system_error(f"the attempt's outputs do not fit in one message: {exc}", "OutputTooLarge")
        )
        await publish_until_stored(js, result_command(dispatch, worker, too_large), dispatch, log, scope)


def stopped_command(dispatch: Dispatch, worker: str, how: str) -> ReportAttemptStopped:
    return ReportAttemptStopped(
        command_id=f"{dispatch.attempt_id}:stopped",
        execution_id=dispatch.execution_id,
        node=dispatch.node,
        attempt_id=dispatch.attempt_id,
        worker=worker,
        reason=how,
    )


async def report_stopped(
    js: JetStreamContext, dispatch: Dispatch, worker: str, how: str, log: FilteringBoundLogger
) -> None:
    """Store that this executor stopped the attempt because its execution ended, and ``how``: the log records it."""
    await publish_until_stored(js, stopped_command(dispatch, worker, how), dispatch, log)


async def publish_until_stored(
    js: JetStreamContext,
    command: ReportAttemptStarted | ReportAttemptResult | ReportAttemptResults | ReportAttemptStopped,
    dispatch: Dispatch,
    log: FilteringBoundLogger,
    scope: str = "",
) -> None:
    """Publish ``command`` until JetStream acknowledges it, backing off while NATS is unreachable; ``scope``: that of
    the task's process sending it (``subjects.command_subject``).

    Retrying is safe: the command id is the message id, so JetStream stores a repeated command once.
    """
    delay = FIRST_RETRY_SECONDS
    while True:
        try:
            await publish_command(js, command, dispatch.project, dispatch.domain, scope=scope)
            return
        except nats.errors.MaxPayloadError:
            raise
        except nats.errors.Error as exc:
            log.warning("publish_retry", command=command.command_id, error=repr(exc), retry_in=delay)
        await anyio.sleep(delay)
        delay = min(delay * 2, LONGEST_RETRY_SECONDS)
