"""Running one attempt of a task in the current process: load it, decode inputs, call it, encode outputs."""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from typing import Any

import msgspec

from plait.core.events import TaskError
from plait.core.model import TaskTarget
from plait.core.task_output import OutputRef
from plait.sdk import secrets
from plait.sdk.dynamic import Dynamic
from plait.sdk.hints import decode_value, encode_value
from plait.sdk.loader import load_target
from plait.sdk.signatures import SINGLE_OUTPUT, is_named_tuple, output_hints
from plait.sdk.task import Task
from plait_executor.surroundings import surroundings_kept
from plait_executor.worker_wear import WorkerWear

CODE_VERSION_MISMATCH = "CodeVersionMismatch"
"""``error_type`` of the system error raised when the loaded code is not the version the dispatch names."""
TASK_NOT_LOADABLE = "TaskNotLoadable"
"""``error_type`` of the system error raised when the task cannot be imported, or is not a task."""


class AttemptOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one attempt produced: encoded ``outputs`` when it succeeded, ``error`` when it failed."""

    outputs: dict[str, Any] | None = None
    error: TaskError | None = None
    seconds: float = 0.0  # time spent in the task's function
    output: bytes = b""  # what the attempt wrote, bounded (see plait_executor.capture), until it is stored
    output_size: int = 0  # bytes it wrote, before the bound
    output_ref: OutputRef | None = None  # where its output was stored
    leftovers: str | None = None  # the temporary files it left, for the executor to remove (plait_executor.scratch)
    worn: WorkerWear | None = None  # its local worker is to be replaced, and why (plait_executor.worker_wear)

    @property
    def succeeded(self) -> bool:
        return self.error is None


class _AttemptFailed(Exception):
    def __init__(self, error: TaskError) -> None:
        super().__init__(error.message)
        self.error = error


def system_error(message: str, error_type: str, exc: BaseException | None = None) -> TaskError:
    return TaskError(
        kind="system",
        message=message,
        error_type=error_type,
        traceback="".join(traceback.format_exception(exc)) if exc is not None else "",
    )


def run_attempt(
    task_target: TaskTarget,
    inputs: Mapping[str, Any],
    version: str | None = None,
    secret_values: Mapping[str, str] | None = None,
) -> AttemptOutcome:
    """``run_task``, with the secrets its task declares (``secret_values``, resolved by the executor; else resolved
    here: a missing one is the task's own error), and their values redacted from its error and refused in its
    outputs (see ``plait.sdk.secrets``)."""
    with secrets.attempt_scope() as resolved:
        resolved.update(secret_values or {})
        return without_secrets(run_task(task_target, inputs, version), resolved)


def run_task(task_target: TaskTarget, inputs: Mapping[str, Any], version: str | None = None) -> AttemptOutcome:
    """Run the task named by ``task_target`` on builtin-encoded ``inputs``; never raises for the task's faults.

    A task that raises gives a ``user`` error with the traceback of its own frames; a task that cannot be
    loaded, inputs that do not fit its hints, or outputs that do not fit its interface give a ``system`` error.
    When ``version`` is given, code whose version differs (the source changed since registration) is refused.
    """
    try:
        task = _load(task_target, version)
        arguments = _decode_inputs(task, inputs)
    except _AttemptFailed as failed:
        return AttemptOutcome(error=failed.error)
    try:
        secrets.load(task.spec.secrets or ())
    except secrets.SecretMissing as exc:
        return AttemptOutcome(error=TaskError(kind="user", message=str(exc), error_type="SecretMissing"))
    started = time.perf_counter()
    if isinstance(task, Dynamic):
        with surroundings_kept():
            return _generate(task, arguments, started)
    try:
        with surroundings_kept():
            result = task.fn(**arguments)
    except (Exception, SystemExit) as exc:
        return AttemptOutcome(error=_user_error(exc), seconds=time.perf_counter() - started)
    seconds = time.perf_counter() - started
    try:
        return AttemptOutcome(outputs=_encode_outputs(task, result), seconds=seconds)
    except _AttemptFailed as failed:
        return AttemptOutcome(error=failed.error, seconds=seconds)


def _generate(task: Dynamic[..., Any], arguments: dict[str, Any], started: float) -> AttemptOutcome:
    """A dynamic task's attempt: its body traced with the actual inputs; the generated DAG is its output."""
    try:
        outputs = task.generated_outputs(arguments)
    except (Exception, SystemExit) as exc:
        return AttemptOutcome(error=_user_error(exc), seconds=time.perf_counter() - started)
    return AttemptOutcome(outputs=outputs, seconds=time.perf_counter() - started)


def _load(target: TaskTarget, version: str | None) -> Task[..., Any]:
    where = f"{target.module}:{target.qualname}"
    try:
        loaded = load_target(target)
        loaded_version = loaded.spec.version if isinstance(loaded, Task) else None
    except Exception as exc:
        raise _AttemptFailed(system_error(f"cannot load task {where}: {exc}", TASK_NOT_LOADABLE, exc)) from exc
    if not isinstance(loaded, Task):
        raise _AttemptFailed(system_error(f"{where} is {type(loaded).__name__}, not a @task", TASK_NOT_LOADABLE))
    if version is not None and loaded_version != version:
        raise _AttemptFailed(
            system_error(
                f"task {loaded.name}: the code loaded from {target.file or target.module} is version "
                f"{loaded_version}, the attempt asks for version {version} "
                "(its source changed since registration)",
                CODE_VERSION_MISMATCH,
            )
        )
    return loaded


def _decode_inputs(task: Task[..., Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for name, encoded in inputs.items():
        if name not in task.input_hints:
            raise _AttemptFailed(system_error(f"task {task.name} has no input '{name}'", "InputError"))
        try:
            arguments[name] = decode_value(encoded, task.input_hints[name])
        except (msgspec.ValidationError, TypeError) as exc:
            raise _AttemptFailed(system_error(f"task {task.name}, input '{name}': {exc}", "InputError", exc)) from exc
    return arguments


def _encode_outputs(task: Task[..., Any], result: Any) -> dict[str, Any]:
    hints = output_hints(task.return_hint)
    if not hints:
        return {}
    if not is_named_tuple(task.return_hint):
        return {SINGLE_OUTPUT: _encode_output(task, SINGLE_OUTPUT, result, hints[SINGLE_OUTPUT])}
    if not isinstance(result, tuple) or len(result) != len(hints):
        raise _AttemptFailed(
            system_error(
                f"task {task.name} returned {type(result).__name__}, expected a tuple of "
                f"{len(hints)} outputs ({', '.join(hints)})",
                "OutputError",
            )
        )
    return {
        name: _encode_output(task, name, value, hint) for (name, hint), value in zip(hints.items(), result, strict=True)
    }


def _encode_output(task: Task[..., Any], name: str, value: Any, hint: Any) -> Any:
    try:
        encoded = encode_value(value)
        decode_value(encoded, hint)
    except (msgspec.ValidationError, TypeError) as exc:
        raise _AttemptFailed(system_error(f"task {task.name}, output '{name}': {exc}", "OutputError", exc)) from exc
    return encoded


def _user_error(exc: BaseException) -> TaskError:
    # Drop run_attempt's own frame: the traceback starts in the task's code.
    user_frames = exc.__traceback__.tb_next if exc.__traceback__ else None
    return TaskError(
        kind="user",
        message=str(exc),
        error_type=type(exc).__qualname__,
        traceback="".join(traceback.format_exception(type(exc), exc, user_frames)),
    )


def without_secrets(outcome: AttemptOutcome, values: Mapping[str, str]) -> AttemptOutcome:
    """``outcome`` with the secrets' ``values`` redacted from its error, and failed if an output holds one."""
    if not values:
        return outcome
    if outcome.outputs is not None:
        encoded = msgspec.json.encode(outcome.outputs).decode()
        held = [
            name for name, value in values.items() if value and (value in encoded or _json_escaped(value) in encoded)
        ]
        if held:
            message = f"an output holds the value of secret '{held[0]}': secrets are never stored"
            return msgspec.structs.replace(
                outcome, outputs=None, error=TaskError(kind="user", message=message, error_type="SecretInOutput")
            )
    error = outcome.error
    if error is None:
        return outcome
    redacted = msgspec.structs.replace(
        error,
        message=secrets.redact(error.message, values.values()),
        traceback=secrets.redact(error.traceback, values.values()),
        output_tail=secrets.redact(error.output_tail, values.values()),
    )
    return msgspec.structs.replace(outcome, error=redacted)


def _json_escaped(value: str) -> str:
    return msgspec.json.encode(value).decode()[1:-1]
