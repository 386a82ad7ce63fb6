"""An attempt's captured output into the logs bucket, before its result is reported: the result then carries a
reference to it, and a failed attempt's error the last lines of it."""

from __future__ import annotations

import msgspec
import nats.errors
from structlog.typing import FilteringBoundLogger

from plait.adapters.output_store import OutputStore
from plait.core.dispatch import Dispatch
from plait.core.task_output import OutputRef, last_lines, output_object_name
from plait_executor.attempt import AttemptOutcome


async def keep_output(
    store: OutputStore, dispatch: Dispatch, outcome: AttemptOutcome, log: FilteringBoundLogger
) -> AttemptOutcome:
    """``outcome`` with its output stored and referred to (``output_ref``), and its tail in its error. An attempt
    that wrote nothing stores nothing; output that cannot be stored is logged and dropped: the result matters more."""
    if not outcome.output:
        return outcome
    text = outcome.output.decode(errors="replace")
    error = outcome.error
    if error is not None and not error.output_tail:
        error = msgspec.structs.replace(error, output_tail=last_lines(text))
    ref = OutputRef(name=output_object_name(dispatch.attempt_id), size=outcome.output_size, kept=len(outcome.output))
    try:
        await store.put(ref.name, outcome.output)
    except nats.errors.Error as exc:
        log.warning("output_not_stored", size=outcome.output_size, error=repr(exc))
        return msgspec.structs.replace(outcome, output=b"", error=error)
    return msgspec.structs.replace(outcome, output=b"", output_ref=ref, error=error)
