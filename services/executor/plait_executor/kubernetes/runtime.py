"""The task runtime: the command of a Kubernetes Job's task container.

``python -m plait_executor.kubernetes.runtime --attempt ATTEMPT_ID`` reads its attempt's dispatch from the
``PLAIT_DISPATCH`` variable (set by the executor in the Job); in a pod of a map Job, ``--batch`` reads it from the
batch in ``PLAIT_DISPATCH_BATCH`` at the pod's ``JOB_COMPLETION_INDEX`` (see ``batches``). It connects to
``PLAIT_NATS_URL`` (with the Job's task grant as its token, when the executor gave it one: see
``task_credential``), reports the attempt started, runs it in this process and reports its result, with the same
commands (and command ids) a local executor sends. Its exit code tells the executor whether the result was reported:

- 0: the task succeeded and its result is stored;
- ``REPORTED_FAILURE_EXIT`` (3): the task failed and that failure is stored (the executor reports nothing);
- anything else (a crash, OOMKilled, a lost NATS connection): no result was stored, and the executor reports a
  system failure. A result the runtime stored just before dying wins: both use the command id
  ``<attempt>:result``, which JetStream stores once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
import structlog
from structlog.typing import FilteringBoundLogger

from plait import codec
from plait.adapters.connection import connect
from plait.adapters.nats_auth import attempt_inbox
from plait.adapters.object_store import ValueStore
from plait.adapters.output_store import OutputStore
from plait.adapters.registry import Registry
from plait.core.dispatch import Dispatch
from plait.core.model import TaskTarget
from plait.core.values import DEFAULT_INLINE_VALUE_LIMIT
from plait.logging import configure_logging
from plait.protocol import subjects
from plait.sdk import secrets
from plait.settings import load_settings
from plait.telemetry import configure_tracing, flush
from plait_executor.attempt import AttemptOutcome
from plait_executor.capture import DEFAULT_OUTPUT_LIMITS, OutputLimits, run_captured
from plait_executor.code_bundles import CodeCache, code_cache_directory, target_of
from plait_executor.code_roots import traceback_in_bundle
from plait_executor.kubernetes.batches import BATCH_VARIABLE, INDEX_VARIABLE, decode_batch
from plait_executor.live_output import LiveOutput, live_output_directory
from plait_executor.registered import register_generated
from plait_executor.reports import publish_until_stored, report_result, started_command
from plait_executor.stored_values import run_with_values
from plait_executor.task_output import keep_output
from plait_executor.tracing import POD_TRACEPARENT, RUNTIME_SERVICE, task_span

DISPATCH_VARIABLE = "PLAIT_DISPATCH"
NATS_URL_VARIABLE = "PLAIT_NATS_URL"
REPORTED_FAILURE_EXIT = 3
NOT_REPORTED_EXIT = 2

log: FilteringBoundLogger = structlog.get_logger("plait.runtime")


def read_dispatch(attempt_id: str) -> Dispatch:
    """The dispatch the executor put in this pod's environment; it must name ``attempt_id``."""
    encoded = os.environ.get(DISPATCH_VARIABLE)
    if not encoded:
        raise SystemExit(f"{DISPATCH_VARIABLE} is not set: the executor sets it in the Job it starts")
    dispatch = codec.dispatch_decoder.decode(encoded.encode())
    if dispatch.attempt_id != attempt_id:
        raise SystemExit(f"{DISPATCH_VARIABLE} is for attempt {dispatch.attempt_id}, not {attempt_id}")
    return dispatch


async def run(
    dispatch: Dispatch,
    nats_url: str,
    worker: str,
    inline_limit: int = DEFAULT_INLINE_VALUE_LIMIT,
    output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
    scope: str = "",
) -> bool:
    """Report ``started``, run the attempt (its referenced inputs downloaded, its large outputs stored), report
    its result, both on the subject of ``scope`` (the only one its credential may report on); whether the task
    succeeded."""
    attempt_log = log.bind(execution=dispatch.execution_id, node=dispatch.node, attempt=dispatch.attempt_id)
    # replies to the attempt's own inbox: its task credential may subscribe to that only
    inbox = attempt_inbox(dispatch.project, dispatch.domain, dispatch.attempt_id)
    nc = await connect(nats_url, name=f"plait-runtime {worker}", inbox_prefix=inbox)
    try:
        js = nc.jetstream()
        await publish_until_stored(js, started_command(dispatch, worker), dispatch, attempt_log, scope)
        attempt_log.info("attempt_started", task=dispatch.task.name, version=dispatch.task.version)

        async with code_cache_directory() as code_cache:
            found = await target_of(dispatch, CodeCache(js, code_cache))
            if isinstance(found, AttemptOutcome):  # its code bundle cannot be used
                outcome = found
            else:
                code_target, code_root = found

                async def call(inputs: dict[str, Any]) -> AttemptOutcome:
                    version = dispatch.task.version
                    known = resolvable_secrets(dispatch)  # redacted from the live view too
                    async with (
                        live_output_directory() as folder,
                        LiveOutput(js, folder).tailing(dispatch, known) as live,
                    ):
                        ran = await anyio.to_thread.run_sync(
                            run_traced, code_target, inputs, version, output_limits, live, code_root
                        )
                    return await register_generated(Registry(js), dispatch, ran)

                outcome = await run_with_values(ValueStore.on_jetstream(js, inline_limit), dispatch, call)
        if outcome.output:  # the pod's own log shows it too (`kubectl logs`)
            sys.stderr.buffer.write(outcome.output)
            sys.stderr.flush()
        outcome = await keep_output(OutputStore(js), dispatch, outcome, attempt_log)
        await report_result(js, dispatch, worker, outcome, attempt_log, scope)
        if outcome.error is not None:
            attempt_log.warning("attempt_failed", kind=outcome.error.kind, message=outcome.error.message)
            print(outcome.error.traceback or outcome.error.message, file=sys.stderr, flush=True)
        else:
            attempt_log.info("attempt_succeeded", seconds=round(outcome.seconds, 6))
        return outcome.error is None
    finally:
        await nc.close()


def run_traced(
    target: TaskTarget,
    inputs: dict[str, Any],
    version: str | None,
    limits: OutputLimits,
    live_path: str | None = None,
    code_root: str | None = None,
) -> AttemptOutcome:
    """``run_captured`` in the task's span: a child of the executor's span of the attempt (``PLAIT_TRACEPARENT``), so
    that spans the task starts join the execution's trace; its output written to ``live_path`` as it runs; its
    traceback naming the files of its code bundle (unpacked at ``code_root``) as in the project."""
    with task_span(target, os.environ.get(POD_TRACEPARENT, "")):
        return traceback_in_bundle(run_captured(target, inputs, version, limits, live_path=live_path), code_root)


def resolvable_secrets(dispatch: Dispatch) -> list[str]:
    """The values of the task's secrets that this pod can resolve (a missing one fails the task when it asks)."""
    values = []
    for name in dispatch.task.secrets or ():
        with contextlib.suppress(secrets.SecretMissing):
            values.append(secrets.resolve(name))
    return values


def read_batch_item() -> Dispatch:
    """The dispatch of this pod's item in the batch of its map Job: the one at its completion index."""
    encoded, index = os.environ.get(BATCH_VARIABLE), os.environ.get(INDEX_VARIABLE, "")
    if not encoded:
        raise SystemExit(f"{BATCH_VARIABLE} is not set: the executor sets it in the map Job it starts")
    if not index.isdecimal():
        raise SystemExit(f"{INDEX_VARIABLE} is {index!r}, not a completion index: is this pod in an Indexed Job?")
    try:
        return decode_batch(encoded).dispatch_at(int(index))
    except IndexError as exc:
        raise SystemExit(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plait_executor.kubernetes.runtime")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--attempt", help="the attempt id this pod runs")
    which.add_argument("--batch", action="store_true", help="run the item at this pod's index of its map Job")
    args = parser.parse_args(argv)
    configure_logging(os.environ.get("PLAIT_LOG_FORMAT", "json"), os.environ.get("PLAIT_LOG_LEVEL", "info"))
    configure_tracing(RUNTIME_SERVICE)
    dispatch = read_batch_item() if args.batch else read_dispatch(args.attempt)
    nats_url = os.environ.get(NATS_URL_VARIABLE)
    if not nats_url:
        raise SystemExit(f"{NATS_URL_VARIABLE} is not set")
    worker = os.environ.get("HOSTNAME") or socket.gethostname()
    try:
        settings = load_settings()
        limits = (settings.task_output_head, settings.task_output_tail)
        # a map Job's pods share its credential, which may report on their node's scope
        scope = subjects.node_scope(dispatch.node) if args.batch else subjects.attempt_scope(dispatch.attempt_id)
        succeeded = anyio.run(run, dispatch, nats_url, worker, settings.inline_value_limit, limits, scope)
    except Exception as exc:
        log.error("attempt_not_reported", error=repr(exc))
        return NOT_REPORTED_EXIT
    finally:
        flush()
    return 0 if succeeded else REPORTED_FAILURE_EXIT


if __name__ == "__main__":
    sys.exit(main())
