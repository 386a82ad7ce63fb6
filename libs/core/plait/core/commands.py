"""Commands: requests to change an execution, published to the command stream by clients, executors and timers;
and what ``decide`` takes, a launch resolved against the registry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

import msgspec

from plait.core.events import AttemptStarted, Event, ExecutionLaunched, GateOpened, RetryScheduled, TaskError
from plait.core.ids import attempt_id, content_version, item_attempt_id
from plait.core.model import LaunchPlanSpec, WorkflowSpec
from plait.core.selectors import LiveExecutor
from plait.core.state import Execution, task_timeout
from plait.core.task_output import OutputRef


class LaunchExecution(msgspec.Struct, frozen=True, kw_only=True, tag="launch_execution.v1"):
    """Launch a registered workflow version, or, with ``launch_plan`` set, a registered launch plan
    (whose workflow the scheduler looks up; ``workflow`` and ``version`` may then be left empty)."""

    command_id: str
    execution_id: str
    project: str
    domain: str
    workflow: str = ""
    version: str = ""
    inputs: dict[str, Any] = {}
    launched_by: str = ""
    launch_plan: str = ""
    launch_plan_version: str = ""
    overwrite_cache: bool = False  # run cached tasks anyway and replace their cached results
    relaunch_of: str = ""  # run this execution's workflow version, inputs and launch plan again (inputs left empty)
    recover: bool = False  # with ``relaunch_of``: reuse the outputs of the nodes that succeeded in it
    cluster: str = ""  # where its tasks run, unless a task names its own ("": the launch plan's, workflow's...)
    parent_execution: str = ""  # of a child execution: the execution whose node ``parent_node`` launched it
    parent_node: str = ""
    traceparent: str = ""  # W3C trace context of the launch, from its message's header (see plait.telemetry)
    cluster_selector: dict[str, str] = {}  # in place of ``cluster``: labels its executors must have ({}: none)


class ReportAttemptStarted(msgspec.Struct, frozen=True, kw_only=True, tag="report_attempt_started.v1"):
    command_id: str
    execution_id: str
    node: str
    attempt_id: str
    worker: str


class ReportAttemptResult(msgspec.Struct, frozen=True, kw_only=True, tag="report_attempt_result.v1"):
    """The outcome of one attempt: ``outputs`` when it succeeded, ``error`` when it failed."""

    command_id: str
    execution_id: str
    node: str
    attempt_id: str
    worker: str
    outputs: dict[str, Any] | None = None
    error: TaskError | None = None
    output: OutputRef | None = None  # what the attempt wrote (stdout, stderr, logging), in the logs bucket


class ReportAttemptResults(msgspec.Struct, frozen=True, kw_only=True, tag="report_attempt_results.v1"):
    """Several attempt results of one execution in one message: those that ended while the executor's previous
    report to the execution was being stored. Decided one by one, in order, as one decision."""

    command_id: str
    execution_id: str
    results: tuple[ReportAttemptResult, ...]


CacheOutcome = Literal["hit", "reserved", "held", "released"]


class ReportCacheLookup(msgspec.Struct, frozen=True, kw_only=True, tag="report_cache_lookup.v1"):
    """What looking up a node's cache key found, for look-up ``round`` of the node.

    ``hit``: the outputs, and the node execution that computed them. ``reserved``: the key was free and this
    node now holds its reservation, so it runs. ``held``: another node holds the reservation until ``until``.
    ``released``: the reservation this node waited on was released or expired, so it looks up again.
    """

    command_id: str
    execution_id: str
    node: str
    cache_key: str
    round: int
    outcome: CacheOutcome
    outputs: dict[str, Any] | None = None
    source_execution: str = ""
    source_node: str = ""
    holder_execution: str = ""
    holder_node: str = ""
    until: datetime | None = None


class ReportCacheLookups(msgspec.Struct, frozen=True, kw_only=True, tag="report_cache_lookups.v1"):
    """Several look-up reports of one execution in one message (a decision's look-ups, found together)."""

    command_id: str
    execution_id: str
    reports: tuple[ReportCacheLookup, ...]


class RetryDue(msgspec.Struct, frozen=True, kw_only=True, tag="retry_due.v1"):
    """A scheduled retry's time has come (sent by a timer): queue attempt ``attempt``."""

    command_id: str
    execution_id: str
    node: str
    attempt: int
    index: int = -1

    @property
    def timer(self) -> str:
        """The name of the node's (or map item's) one retry timer: scheduling it again replaces it."""
        return "retry-" + content_version(self.node, self.index)[:16]


def retry_due(execution_id: str, scheduled: RetryScheduled) -> RetryDue:
    """The command that says the retry ``scheduled`` is due, named after the attempt it queues."""
    if scheduled.index >= 0:
        next_attempt = item_attempt_id(execution_id, scheduled.node, scheduled.index, scheduled.attempt)
    else:
        next_attempt = attempt_id(execution_id, scheduled.node, scheduled.attempt)
    return RetryDue(
        command_id=f"{next_attempt}:due",
        execution_id=execution_id,
        node=scheduled.node,
        attempt=scheduled.attempt,
        index=scheduled.index,
    )


DEFAULT_ATTEMPT_DEADLINE_SECONDS = 3600.0
"""How long a started attempt may go without a result and without a sign of life from its executor (running with a
dead executor) before it fails as a system error. A queued attempt waits for an executor of its cluster."""


class AttemptDeadline(msgspec.Struct, frozen=True, kw_only=True, tag="attempt_deadline.v1"):
    """Attempt ``attempt_id`` has had neither a result nor a sign of life for ``seconds`` (sent by its deadline
    timer, which the attempt's start sets and its executor moves on while it runs): it fails as a system error if it
    is running; one that ended meanwhile, or that no executor has taken yet, stays as it is."""

    command_id: str
    execution_id: str
    node: str
    attempt_id: str
    seconds: float

    @property
    def timer(self) -> str:
        """The name of the attempt's one deadline timer: setting it again moves it."""
        return "deadline-" + content_version(self.attempt_id)[:16]


def attempt_deadline(execution_id: str, node: str, attempt: str, seconds: float) -> AttemptDeadline:
    """The command that fails attempt ``attempt`` when its deadline timer fires ``seconds`` from being set."""
    return AttemptDeadline(
        command_id=f"{attempt}:deadline",
        execution_id=execution_id,
        node=node,
        attempt_id=attempt,
        seconds=seconds,
    )


class AttemptTimeout(msgspec.Struct, frozen=True, kw_only=True, tag="attempt_timeout.v1"):
    """Attempt ``attempt_id`` of a task with a timeout has run for ``seconds`` (sent by its timeout timer, which its
    start sets): still running, it fails as the task's own failure, and may be retried."""

    command_id: str
    execution_id: str
    node: str
    attempt_id: str
    seconds: float

    @property
    def timer(self) -> str:
        """The name of the attempt's one timeout timer."""
        return "timeout-" + content_version(self.attempt_id)[:16]


def attempt_timeout(execution_id: str, node: str, attempt: str, seconds: float) -> AttemptTimeout:
    """The command that fails attempt ``attempt`` once it has run for ``seconds``."""
    return AttemptTimeout(
        command_id=f"{attempt}:timeout", execution_id=execution_id, node=node, attempt_id=attempt, seconds=seconds
    )


class ExecutionTimeout(msgspec.Struct, frozen=True, kw_only=True, tag="execution_timeout.v1"):
    """The execution of a workflow with a timeout has run for ``seconds`` (sent by the timer its launch sets): still
    running, it fails."""

    command_id: str
    execution_id: str
    seconds: float

    @property
    def timer(self) -> str:
        """The name of the execution's one timeout timer."""
        return "timeout-execution"


def execution_timeout(execution_id: str, seconds: float) -> ExecutionTimeout:
    """The command that fails execution ``execution_id`` once it has run for ``seconds``."""
    return ExecutionTimeout(command_id=f"{execution_id}:timeout", execution_id=execution_id, seconds=seconds)


class TimeoutTimer(NamedTuple):
    """A timeout timer a decision asks for: ``command`` is due ``seconds`` after ``since``, a time in the log."""

    command: AttemptTimeout | ExecutionTimeout | GateTimer
    since: datetime
    seconds: float


def timeout_timers(state: Execution, events: Iterable[Event]) -> list[TimeoutTimer]:
    """The timeout timers ``events`` (one decision's, ``state`` after it) ask for: a launch of a workflow with a
    timeout, from its launch; an attempt of a task with a timeout started and still running, from its start."""
    if state.terminal:
        return []
    timers: list[TimeoutTimer] = []
    for event in events:
        if isinstance(event, ExecutionLaunched):
            seconds = state.workflow.timeout_seconds
            if seconds is not None and state.launched_at is not None:
                timers.append(TimeoutTimer(execution_timeout(state.execution_id, seconds), state.launched_at, seconds))
        elif isinstance(event, AttemptStarted):
            node = state.nodes[event.node]
            seconds = task_timeout(state, node.task)
            attempt = node.find_attempt(event.attempt_id)
            if seconds is None or attempt is None or attempt.status != "running" or attempt.started_at is None:
                continue
            command = attempt_timeout(state.execution_id, event.node, event.attempt_id, seconds)
            timers.append(TimeoutTimer(command, attempt.started_at, seconds))
        elif isinstance(event, GateOpened):
            timers += gate_timers(state, event)
    return timers


def gate_timers(state: Execution, event: GateOpened) -> list[TimeoutTimer]:
    """The timer of a gate still waiting: its sleep's end, or its signal's timeout, from when it opened."""
    node = state.nodes[event.node]
    seconds = event.seconds if event.kind == "sleep" else event.timeout_seconds
    if seconds is None or node.status != "waiting" or node.gate_opened_at is None:
        return []
    return [TimeoutTimer(gate_timer(state.execution_id, event.node, seconds), node.gate_opened_at, seconds)]


class SendSignal(msgspec.Struct, frozen=True, kw_only=True, tag="send_signal.v1"):
    """Give signal ``name`` of an execution its ``value`` (a ``wait_for_input`` gate), or approve (or, with
    ``reject``, reject) an ``approve`` gate."""

    command_id: str
    execution_id: str
    name: str
    value: Any = None
    reject: bool = False
    sent_by: str = ""


class GateTimer(msgspec.Struct, frozen=True, kw_only=True, tag="gate_timer.v1"):
    """Gate node ``node`` has waited ``seconds`` (sent by the timer its opening set): a sleep is over; a signal or
    approval still not given fails the node."""

    command_id: str
    execution_id: str
    node: str
    seconds: float

    @property
    def timer(self) -> str:
        """The name of the gate's one timer."""
        return "gate-" + content_version(self.node)[:16]


def gate_timer(execution_id: str, node: str, seconds: float) -> GateTimer:
    return GateTimer(command_id=f"{execution_id}/{node}:gate", execution_id=execution_id, node=node, seconds=seconds)


class AbortExecution(msgspec.Struct, frozen=True, kw_only=True, tag="abort_execution.v1"):
    command_id: str
    execution_id: str
    reason: str = "aborted by request"
    aborted_by: str = ""  # who asks (``user@host``, or the configured principal)


class ReportAttemptStopped(msgspec.Struct, frozen=True, kw_only=True, tag="report_attempt_stopped.v1"):
    """An executor stopped attempt ``attempt_id``, still running when its execution ended; ``reason`` says how
    (its process killed, its Kubernetes Job deleted)."""

    command_id: str
    execution_id: str
    node: str
    attempt_id: str
    worker: str
    reason: str


ChildStatus = Literal["succeeded", "failed", "aborted", "rejected"]


class ReportChildEnded(msgspec.Struct, frozen=True, kw_only=True, tag="report_child_ended.v1"):
    """Child execution ``child_execution``, launched by node ``node`` of execution ``execution_id``, ended with
    ``status`` ("rejected": its launch was refused, ``error`` says why); sent by the scheduler that decided its end."""

    command_id: str
    execution_id: str
    node: str
    child_execution: str
    status: ChildStatus
    outputs: dict[str, Any] | None = None
    error: TaskError | None = None


Command = (
    LaunchExecution
    | ReportAttemptStarted
    | ReportAttemptResult
    | ReportAttemptResults
    | ReportCacheLookup
    | ReportCacheLookups
    | RetryDue
    | AttemptDeadline
    | AttemptTimeout
    | ExecutionTimeout
    | AbortExecution
    | ReportAttemptStopped
    | SendSignal
    | GateTimer
    | ReportChildEnded
)


class ResolvedLaunch(msgspec.Struct, frozen=True):
    """A launch command together with the registered workflow (and launch plan) it names, looked up by the shell."""

    command: LaunchExecution
    workflow: WorkflowSpec
    launch_plan: LaunchPlanSpec | None = None
    original: Execution | None = None  # for a relaunch or recovery: the execution it names, as its log has it
    default_cluster: str = ""  # the project's default cluster, from the scheduler's settings
    default_task_timeout_seconds: float | None = None  # of tasks that set none, from the scheduler's settings
    live_executors: tuple[LiveExecutor, ...] = ()  # read by the shell when a cluster selector is to be resolved


def command_id_of(command: Command | ResolvedLaunch) -> str:
    return command.command.command_id if isinstance(command, ResolvedLaunch) else command.command_id


def command_type_of(command: Command | ResolvedLaunch) -> str:
    inner = command.command if isinstance(command, ResolvedLaunch) else command
    return str(type(inner).__struct_config__.tag)


def each_command(commands: Sequence[Command | ResolvedLaunch]) -> Iterable[Command | ResolvedLaunch]:
    """The commands one by one, those sent together (results, cache reports) taken apart."""
    for command in commands:
        if isinstance(command, ReportCacheLookups):
            yield from command.reports
        elif isinstance(command, ReportAttemptResults):
            yield from command.results
        else:
            yield command
