"""A simulated plait, driven step by step by one seeded ``random.Random``.

Real code where it decides: the scheduler's ``Decider`` and ``StateCache`` (so the pure core's ``decide_batch``
and ``apply_decision``), the executor's ``run_attempt`` on the real task functions, and the invariant checker.
In memory, as models: the event log (OCC on the subject's last sequence, duplicate detection by message id), the
command and dispatch queues (deliveries counted, redelivered after a nak, a lost ack or a crash), the outbox,
timers, and the scheduler shell around the ``Decider`` (the same steps as ``SchedulerService._handle_execution``).

Faults: append failures (timeouts before and after storing, no responders, decisions too large for the server),
replica crashes at any point of handling (cache lost, unacked commands redelivered), lost acks, the server forgetting
its last acks in a crash (those messages sent again as new: the streams keep messages by limits), executors dying
mid-attempt, user and system errors, attempts that hang past their timeouts (killed once the log ends them), timers
firing late or twice, aborts. Each step is followed by the checks;
then, with faults off, the world runs until nothing is left to do (quiescence) and every execution must have
ended. The same seed gives the same log, byte for byte.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats.errors
import structlog.testing

import plait_scheduler.decisions
from plait import codec
from plait.adapters.event_log import DecisionTooLarge
from plait.adapters.object_store import InMemoryObjects, ValueStore
from plait.audit_lineage import check_lineage
from plait.core.commands import (
    AbortExecution,
    Command,
    LaunchExecution,
    ReportAttemptResult,
    ReportAttemptResults,
    ResolvedLaunch,
    retry_due,
    timeout_timers,
)
from plait.core.dispatch import Dispatch, DispatchRecord, chunk_queued, dispatches_in, record_of
from plait.core.events import (
    Decision,
    NodeQueued,
    RetryScheduled,
    TaskError,
)
from plait.core.ids import content_version
from plait.core.selectors import LiveExecutor
from plait.core.state import Execution, apply_decision
from plait.core.task_output import OutputRef, output_object_name
from plait.core.values import as_ref
from plait.errors import ConflictError
from plait.invariants import check_execution
from plait.protocol import subjects
from plait.replay import Record, replay
from plait.sdk import Workflow
from plait_executor.attempt import AttemptOutcome, run_attempt
from plait_executor.reports import result_command, started_command, stopped_command
from plait_executor.stored_values import run_with_values
from plait_scheduler.cache import StateCache
from plait_scheduler.decisions import Decider
from plait_scheduler.service import MAX_DELIVERIES
from tests import (
    branch_workflows,
    cluster_workflows,
    definitions,
    dynamic_workflows,
    gate_workflows,
    map_workflows,
    workflows,
)
from tests.sim import workflows as sim_workflows

PROJECT, DOMAIN = "sim", "dev"
DUPLICATE_WINDOW = 120.0  # seconds, as on the real streams
ACK_WAIT = 30.0
ACKS_WRITTEN_AFTER = 0.2  # nats-server writes a consumer's acknowledgements to disk this long after it takes them
CHUNK_ATTEMPTS = 4  # small, so that the workflows' fan-outs go out in several chunks
NAK_DELAY = 1.0
START = datetime(2026, 1, 1, tzinfo=UTC)

Shape = tuple[Workflow[..., Any], dict[str, Any]]


SHAPES: tuple[Shape, ...] = (
    (workflows.chain, {"start": 0}),
    (workflows.sum_of_squares, {"n": 3}),
    (workflows.failing, {}),
    (workflows.retrying, {}),
    (definitions.diamond, {"x": 1}),
    (definitions.fan_out_fan_in, {"x": 1}),
    (definitions.retried, {"x": 2}),
    (map_workflows.scaled_sum, {"xs": [1, 2, 3, 4, 5]}),
    (map_workflows.tolerant, {"xs": [1, 2, 3, 4]}),
    (map_workflows.strict, {"xs": [2, 4, 5]}),
    (map_workflows.scaled, {"xs": []}),
    (sim_workflows.retried_later, {"x": 1}),
    (sim_workflows.items_retried_later, {"xs": [1, 2, 3]}),
    (sim_workflows.widely_read, {}),
)


DEFAULT_CLUSTER = "home"
"""The project's default cluster every simulated launch records (as a scheduler's ``PLAIT_DEFAULT_CLUSTER``)."""
LIVE_EXECUTORS = (
    LiveExecutor(cluster="gpu-east", labels={"gpu": "a100", "region": "east"}),
    LiveExecutor(cluster="gpu-west", labels={"gpu": "a100", "region": "west"}),
    LiveExecutor(cluster="cpu-east", labels={"region": "east"}),
    LiveExecutor(cluster="cpu-east", labels={"region": "east"}),
)
"""The live executors every simulated launch's cluster selectors are matched against."""


@dataclasses.dataclass(frozen=True)
class Faults:
    """How often each fault happens: per operation for appends, acks and attempts, per step for the rest."""

    append_timeout: float = 0.0  # nothing stored, the caller sees a timeout
    append_timeout_after: float = 0.0  # stored, but the reply is lost: the caller sees a timeout
    append_unavailable: float = 0.0  # no responders (a leader change)
    max_payload: int = 8 * 1024 * 1024  # a decision larger than this is refused, every time
    replica_crash: float = 0.02
    ack_lost: float = 0.03
    server_crash: float = 0.01  # per step: the acks of the last ACKS_WRITTEN_AFTER seconds are forgotten
    executor_crash: float = 0.05
    user_error: float = 0.15
    system_error: float = 0.05
    started_first: float = 0.3  # an attempt reports ``started`` before its result
    results_together: float = 0.3  # per dispatch message: its results are held, and sent as one command at its end
    hand_on: float = 0.2  # per dispatch message: the executor hands on some of its attempts (or all) in a copy of it
    timer_late: float = 0.3
    timer_twice: float = 0.2
    abort: float = 0.01
    hang: float = 0.0  # an attempt of a task with a timeout runs on, until the log ends it (then it is killed)
    inline_value_limit: int = 0  # above it, the executor stores outputs in the values bucket; 0: it stores nothing
    object_lost: float = 0.0  # per attempt: an object its inputs name is gone from the values bucket


@dataclasses.dataclass(frozen=True)
class Profile:
    faults: Faults
    shapes: tuple[Shape, ...] = SHAPES
    replicas: int = 3
    executions: int = 4


PROFILES = {
    "one_replica": Profile(Faults(), replicas=1),
    "replicas": Profile(Faults()),
    "append_failures": Profile(Faults(append_timeout=0.04, append_timeout_after=0.04, append_unavailable=0.03)),
    # every launch fits, the decision queueing widely_read's six readers (~9 KB) never does
    "small_messages": Profile(Faults(max_payload=6_000)),
    # outputs over 2 bytes go to the values bucket, whose objects are sometimes lost
    "stored_values": Profile(Faults(inline_value_limit=2, object_lost=0.1)),
    # tasks and workflows naming clusters (the invariants check each attempt's cluster against the precedence)
    "clusters": Profile(
        Faults(),
        shapes=(
            (cluster_workflows.east_then_west, {"x": 1}),
            (cluster_workflows.northern, {"x": 1}),
            (cluster_workflows.unplaced, {"x": 1}),
            (cluster_workflows.eastern_by_label, {"x": 1}),
            (cluster_workflows.on_gpu, {"x": 1}),
        ),
    ),
    "timeouts": Profile(
        Faults(hang=0.4),
        shapes=((sim_workflows.timed, {"x": 1}), (sim_workflows.bounded, {"x": 1}), (workflows.chain, {"start": 0})),
    ),
    # failure_policy="finish" under user errors, and aborts of executions whose attempts hang (stopped, recorded)
    "finish_and_aborts": Profile(
        Faults(abort=0.05, hang=0.4),
        shapes=((sim_workflows.finishing, {"x": 1}), (sim_workflows.timed, {"x": 1}), (definitions.diamond, {"x": 1})),
    ),
    # dynamic nodes: sub-DAGs generated at run time, nested, with failing generated nodes, under every fault
    "dynamic": Profile(
        Faults(abort=0.02),
        shapes=(
            (dynamic_workflows.sum_of_squares, {"n": 3}),
            (dynamic_workflows.nested_squares, {"groups": [[1, 2], [3]]}),
            (sim_workflows.generated, {"x": 1}),
        ),
    ),
    "branches": Profile(
        Faults(),
        shapes=(
            (branch_workflows.classify, {"x": 3.0}),
            (branch_workflows.classify, {"x": 0.1}),
            (branch_workflows.positive_only, {"x": -1.0}),
            (branch_workflows.nested, {"x": 2.0, "fast": False}),
            (branch_workflows.nested, {"x": -2.0, "fast": True}),
            (gate_workflows.naps, {"n": 1}),
            (gate_workflows.asks_briefly, {}),
        ),
    ),
}


class SimulationFailed(AssertionError):
    """An invariant or the failure model was broken: the message names the seed that replays it."""

    def __init__(self, message: str, world: World | None = None) -> None:
        super().__init__(message)
        self.world = world


@dataclasses.dataclass
class Message:
    """A message of a work queue (commands or dispatches)."""

    number: int
    subject: str
    msg_id: str
    body: Command | ResolvedLaunch | DispatchRecord
    deliveries: int = 0
    visible_at: float = 0.0
    holder: str = ""
    attempts: frozenset[str] | None = None  # a handed-on copy's ``Plait-Attempts``: the attempts it is for


class WorkQueue:
    """A JetStream stream with one durable consumer, explicit acks and duplicate detection; what was acknowledged is
    gone, but for the acks a crashed server forgot (``forget_acks``)."""

    def __init__(self) -> None:
        self.messages: dict[int, Message] = {}
        self.acked: dict[int, tuple[Message, float]] = {}  # acknowledged lately, with when
        self.published: dict[str, float] = {}  # msg id -> when, for duplicate detection
        self.numbers = 0

    def publish(
        self,
        subject: str,
        msg_id: str,
        body: Command | ResolvedLaunch | DispatchRecord,
        now: float,
        attempts: frozenset[str] | None = None,
    ) -> bool:
        if now - self.published.get(msg_id, -DUPLICATE_WINDOW - 1) <= DUPLICATE_WINDOW:
            return False
        self.published[msg_id] = now
        self.numbers += 1
        self.messages[self.numbers] = Message(self.numbers, subject, msg_id, body, visible_at=now, attempts=attempts)
        return True

    def visible(self, now: float) -> list[Message]:
        return [m for m in self.messages.values() if not m.holder and m.visible_at <= now]

    def pull(self, holder: str, now: float, limit: int) -> list[Message]:
        taken = self.visible(now)[:limit]
        for message in taken:
            message.holder, message.deliveries = holder, message.deliveries + 1
        return taken

    def ack(self, message: Message, now: float) -> None:
        if self.messages.pop(message.number, None) is not None:
            self.acked[message.number] = (message, now)
        self.acked = {n: (m, at) for n, (m, at) in self.acked.items() if now - at <= ACKS_WRITTEN_AFTER}

    def forget_acks(self, now: float) -> int:
        """The server crashed: what it acknowledged lately comes back, delivered as if never before."""
        forgotten = [m for m, at in self.acked.values() if now - at <= ACKS_WRITTEN_AFTER]
        for message in forgotten:
            message.holder, message.deliveries, message.visible_at = "", 0, now
            self.messages[message.number] = message
        self.acked = {}
        return len(forgotten)

    def redeliver(self, message: Message, at: float) -> None:
        message.holder, message.visible_at = "", at

    def next_visible(self) -> float | None:
        waiting = [m.visible_at for m in self.messages.values() if not m.holder]
        return min(waiting) if waiting else None


class SimLog:
    """The events stream: records in sequence, by subject."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.by_subject: dict[str, list[Record]] = {}
        self.by_msg_id: dict[str, int] = {}

    def last_sequence(self, subject: str) -> int:
        stored = self.by_subject.get(subject)
        return stored[-1].sequence if stored else 0

    def store(self, subject: str, data: bytes, msg_id: str) -> int:
        record = Record(sequence=len(self.records) + 1, subject=subject, data=data, msg_id=msg_id)
        self.records.append(record)
        self.by_subject.setdefault(subject, []).append(record)
        self.by_msg_id[msg_id] = record.sequence
        return record.sequence


class SimStore:
    """The in-memory twin of ``plait.adapters.event_store.EventStore`` (``load``, ``append``), failing on purpose.

    Raises what the real store lets through: ``ConflictError`` on a wrong last sequence, the nats-py errors
    otherwise (a timeout, no responders), and ``DecisionTooLarge`` for a message larger than the server takes.
    """

    def __init__(self, world: World) -> None:
        self.world = world

    async def load(self, subject: str, state: Execution | None = None, *, at_least: int = 0) -> Execution | None:
        """The log is one in-memory list: every read sees every record stored, so ``at_least`` always holds."""
        after = state.last_sequence if state else 0
        for record in self.world.log.by_subject.get(subject, []):
            if record.sequence > after:
                decision = codec.decision_decoder.decode(record.data)
                state = apply_decision(state, decision, record.sequence, record.msg_id)
        return state

    async def append(self, subject: str, decision: Decision, expected_sequence: int) -> tuple[int, str]:
        return await self.append_encoded(subject, codec.encode(decision), expected_sequence)

    async def append_encoded(self, subject: str, data: bytes, expected_sequence: int) -> tuple[int, str]:
        world, faults = self.world, self.world.faults
        digest = codec.digest(data)
        if len(data) > faults.max_payload:
            raise DecisionTooLarge(len(data), faults.max_payload)
        if world.chance(faults.append_timeout):
            raise nats.errors.TimeoutError
        if world.chance(faults.append_unavailable):
            raise nats.errors.NoRespondersError
        log = world.log
        if digest in log.by_msg_id:  # within the duplicate window: acknowledged, not stored again
            return log.by_msg_id[digest], digest
        if log.last_sequence(subject) != expected_sequence:
            raise ConflictError(f"{subject} moved past sequence {expected_sequence}")
        sequence = log.store(subject, data, digest)
        world.appended.add(subject)
        if world.chance(faults.append_timeout_after):
            raise nats.errors.TimeoutError
        return sequence, digest


def _object_names(value: Any) -> set[str]:
    """The objects the references in ``value`` name."""
    if (ref := as_ref(value)) is not None:
        return {ref.object_name}
    if isinstance(value, dict):
        return set().union(*(_object_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_object_names(v) for v in value))
    return set()


def complete(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (the simulated store answers at once) to its result."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("a simulated call suspended")


class Replica:
    """A scheduler replica: its cache and ``Decider`` (real), and the commands it holds."""

    def __init__(self, name: str, world: World) -> None:
        self.name, self.world = name, world
        self.held: list[Message] = []
        self.restart()

    def restart(self) -> None:
        self.cache = StateCache()
        self.decider = Decider(self.world.store, self.cache, self.name)  # type: ignore[arg-type]

    def crash(self) -> None:
        """Killed: its memory is gone, and what it held comes back after the ack wait."""
        world = self.world
        for message in self.held:
            world.commands.redeliver(message, world.now + ACK_WAIT)
        self.held = []
        self.restart()
        world.counts["replica_crashes"] += 1


class World:
    def __init__(
        self, seed: int, faults: Faults, executions: int = 3, replicas: int = 3, shapes: tuple[Shape, ...] = SHAPES
    ) -> None:
        self.seed, self.faults, self.shapes = seed, faults, shapes
        self.rng = random.Random(seed)
        self.now = 0.0
        self.log = SimLog()
        self.store = SimStore(self)
        self.commands = WorkQueue()
        self.dispatches = WorkQueue()
        self.timers: dict[str, tuple[float, Command, bool]] = {}  # timer -> (due, command, fires a second time)
        self.hanging: list[tuple[Message, Dispatch]] = []  # attempts that run on, until the log ends them
        self.unsettled: dict[int, int] = {}  # a held dispatch message's attempts not settled yet, by its number
        self.outbox_position = 0
        self.dead_letters: dict[str, str] = {}  # command id -> reason
        self.appended: set[str] = set()  # subjects appended to in this step
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "steps",
                "decisions",
                "conflicts",
                "replica_crashes",
                "acks_lost",
                "acks_forgotten",
                "executor_crashes",
                "held_results_lost",
                "results_sent_together",
                "chunk_attempts_skipped",
                "attempts_handed_on",
                "timers_fired",
                "hung_attempts",
                "attempts_killed",
                "aborts",
                "dead_letters",
                "values_stored",
                "objects_lost",
            ),
            0,
        )
        self.objects = InMemoryObjects()
        self.values = ValueStore(self.objects, faults.inline_value_limit) if faults.inline_value_limit else None
        self.replicas = [Replica(f"replica-{n}", self) for n in range(replicas)]
        self.launches = [self._launch_message(n) for n in range(executions)]
        self.faulty = True

    # -- time and chance ----------------------------------------------------------------------------------------

    def chance(self, probability: float) -> bool:
        return self.faulty and probability > 0 and self.rng.random() < probability

    def clock(self) -> datetime:
        return START + timedelta(seconds=self.now)

    # -- what clients and executors publish ---------------------------------------------------------------------

    def _launch_message(self, n: int) -> ResolvedLaunch:
        wf, inputs = self.rng.choice(self.shapes)
        command = LaunchExecution(
            command_id=f"launch-{n}",
            execution_id=f"x{n}",
            project=PROJECT,
            domain=DOMAIN,
            workflow=wf.spec.name,
            version=wf.spec.version,
            inputs=inputs,
        )
        return ResolvedLaunch(
            command=command, workflow=wf.spec, default_cluster=DEFAULT_CLUSTER, live_executors=LIVE_EXECUTORS
        )

    def send(self, command: Command | ResolvedLaunch, *, again: bool = False) -> None:
        inner = command.command if isinstance(command, ResolvedLaunch) else command
        subject = subjects.execution_subject(PROJECT, DOMAIN, inner.execution_id)
        msg_id = f"{inner.command_id}#{self.now}" if again else inner.command_id  # again: outside the window
        self.commands.publish(subject, msg_id, command, self.now)

    # -- the scheduler replicas --------------------------------------------------------------------------------

    def pull(self, replica: Replica) -> None:
        replica.held += self.commands.pull(replica.name, self.now, self.rng.randint(1, 8))

    def handle(self, replica: Replica) -> None:
        """Decide the held commands of one execution, as ``SchedulerService._handle_execution`` does."""
        subject = replica.held[0].subject
        group = [m for m in replica.held if m.subject == subject]
        replica.held = [m for m in replica.held if m.subject != subject]
        for message in [m for m in group if m.deliveries > MAX_DELIVERIES]:  # handed back too often: not decided
            self.dead_letter(message, f"delivered {message.deliveries} times without being settled")
            self.commands.ack(message, self.now)
            group.remove(message)
        if not group:
            return
        commands = [m.body for m in group]
        conflicts = replica.decider.conflicts
        try:
            outcome = complete(replica.decider.decide(subject, commands))  # type: ignore[arg-type]
        except Exception as exc:  # as the service: anything but a rejection is retried, then dead-lettered
            for message in group:
                if message.deliveries >= MAX_DELIVERIES:
                    self.dead_letter(message, f"failed repeatedly while deciding: {exc!r}")
                    self.commands.ack(message, self.now)
                else:
                    self.commands.redeliver(message, self.now + NAK_DELAY)
            return
        finally:
            self.counts["conflicts"] += replica.decider.conflicts - conflicts
        if outcome.events:
            self.counts["decisions"] += 1
        if self.chance(self.faults.replica_crash):  # after the append, before its side work
            replica.held = group + replica.held
            replica.crash()
            return
        if outcome.events and outcome.state is not None:
            self.side_work(outcome.state, outcome.events, outcome.state.last_sequence, self.clock())
        if self.chance(self.faults.replica_crash):  # before the acks
            replica.held = group + replica.held
            replica.crash()
            return
        rejected = {self.command_id(c): reason for c, reason in outcome.rejections}
        for message in group:
            if self.command_id(message.body) in rejected:
                self.dead_letter(message, rejected[self.command_id(message.body)])
            self.ack(self.commands, message)
            self.check_decided(message)

    def side_work(self, state: Execution, events: Any, decision_sequence: int, decided_at: datetime) -> None:
        """Dispatch the attempts a stored decision queued, and set the timers it asked for."""
        queued = [event for event in events if isinstance(event, NodeQueued)]
        for chunk in chunk_queued(queued, "", most_attempts=CHUNK_ATTEMPTS, least_chunks=1) if queued else []:
            record = record_of(state, chunk.events, decision_sequence)
            msg_id = chunk.message_id(state.execution_id, decision_sequence)
            self.dispatches.publish(f"{chunk.cluster}.{chunk.queue}", msg_id, record, self.now)
        for event in events:
            if isinstance(event, RetryScheduled):
                self.set_timer(state, event, decided_at)
        if not state.terminal:
            self.set_timeouts(state, events)

    def set_timeouts(self, state: Execution, events: Any) -> None:
        """The timeout timers a decision asks for, as ``plait_scheduler.timers.Timeouts`` sets them: from the
        times in the log (an attempt's start, the launch)."""
        for timer in timeout_timers(state, events):
            self.schedule(state, timer.command, timer.since, timer.seconds)

    def schedule(self, state: Execution, command: Command, since: datetime, seconds: float) -> None:
        timer = f"{state.execution_id}:{command.timer}"  # type: ignore[union-attr]
        self.timers[timer] = ((since - START).total_seconds() + seconds, command, False)

    def set_timer(self, state: Execution, event: RetryScheduled, decided_at: datetime) -> None:
        command = retry_due(state.execution_id, event)
        due = (decided_at - START).total_seconds() + event.delay_seconds
        if due <= self.now:  # overdue (a decision caught up late): published at once, as RetryTimers does
            self.send(command)
            return
        timer = f"{state.execution_id}:{command.timer}"
        self.timers[timer] = (due, command, False)  # one schedule per timer subject: the newest replaces it

    def outbox(self) -> None:
        """The ``dispatcher`` consumer: the side work of the next stored decision (a no-op when already done)."""
        record = self.log.records[self.outbox_position]
        self.outbox_position += 1
        decision = codec.decision_decoder.decode(record.data)
        state = replay(self.log.by_subject[record.subject], at_sequence=record.sequence)
        self.side_work(state, decision.events, record.sequence, decision.at)

    # -- executors and timers -----------------------------------------------------------------------------------

    def execute(self) -> None:
        """The executor takes a dispatch message and runs its attempts in turn; a crash takes the rest with it, and the
        message comes back whole, to skip the attempts the log shows ended (as ``AttemptRunner`` does). Its results
        are sent as each attempt ends, or (``results_together``) held and sent as one command once the last has
        ended, as an executor's result reporter does while attempts of that execution wait for a worker: a crash
        then loses the results held. Some attempts of a message (or all) may be handed on first (``hand_on``, as
        ``plait_executor.hand_on`` does with those waiting for a worker): a copy of the message names them, and
        they are settled here; a crash before the message is acked brings it back whole, copy or not."""
        [message] = self.dispatches.pull("executor", self.now, 1)
        carried = dispatches_in(message.body)  # type: ignore[arg-type]
        if message.attempts is not None:
            carried = [d for d in carried if d.attempt_id in message.attempts]
        dispatches = carried
        if len(dispatches) > 1 and message.deliveries > 1:
            dispatches = [d for d in dispatches if not self.attempt_ended(d)]
            self.counts["chunk_attempts_skipped"] += len(carried) - len(dispatches)
        if dispatches and self.chance(self.faults.hand_on):
            cut = self.rng.randint(0, len(dispatches) - 1)  # all of them, when none could start here
            dispatches, handed = dispatches[:cut], dispatches[cut:]
            names = ",".join(d.attempt_id for d in handed)
            copy_id = f"{message.msg_id.split('/on/', 1)[0]}/on/{message.number}/{content_version([names])}"
            attempts = frozenset(d.attempt_id for d in handed)
            if self.dispatches.publish(message.subject, copy_id, message.body, self.now, attempts=attempts):
                self.counts["attempts_handed_on"] += len(handed)
        self.unsettled[message.number] = len(dispatches)
        held: list[ReportAttemptResult] | None = [] if self.chance(self.faults.results_together) else None
        for dispatch in dispatches:
            if not self.run_one(message, dispatch, held):
                self.hanging = [(m, d) for m, d in self.hanging if m is not message]  # died with its executor
                del self.unsettled[message.number]
                self.dispatches.redeliver(message, self.now + ACK_WAIT)
                self.counts["executor_crashes"] += 1
                self.counts["held_results_lost"] += len(held or [])
                return
        if held:
            self.send_together(held)
        if not self.unsettled[message.number]:
            del self.unsettled[message.number]
            self.ack(self.dispatches, message)

    def attempt_ended(self, dispatch: Dispatch) -> bool:
        state = replay(self.log.by_subject[subjects.execution_subject(PROJECT, DOMAIN, dispatch.execution_id)])
        attempt = state.nodes[dispatch.node].find_attempt(dispatch.attempt_id)
        return attempt is not None and attempt.status in ("succeeded", "failed", "stopped")

    def send_together(self, results: list[ReportAttemptResult]) -> None:
        if len(results) == 1:
            self.send(results[0])
            return
        self.send(
            ReportAttemptResults(
                command_id="results:" + content_version([result.command_id for result in results]),
                execution_id=results[0].execution_id,
                results=tuple(results),
            )
        )
        self.counts["results_sent_together"] += len(results)

    def run_one(self, message: Message, dispatch: Dispatch, held: list[ReportAttemptResult] | None = None) -> bool:
        """One attempt of a held message; False when its executor crashed. Its result is sent, or added to ``held``."""
        if self.chance(self.faults.started_first):
            self.send(started_command(dispatch, "executor"))
        if self.chance(self.faults.executor_crash):  # the worker died with it: the dispatch comes back
            return False
        timeouts = dispatch.task.timeout_seconds is not None or self.timeout_of(dispatch) is not None
        if timeouts and self.chance(self.faults.hang):  # runs on past its timeout, reporting it started
            self.send(started_command(dispatch, "executor"))
            self.hanging.append((message, dispatch))
            self.counts["hung_attempts"] += 1
            return True
        if self.chance(self.faults.user_error):
            outcome = AttemptOutcome(error=TaskError(kind="user", message="injected", error_type="RuntimeError"))
        elif self.chance(self.faults.system_error):
            outcome = AttemptOutcome(error=TaskError(kind="system", message="worker lost", error_type="WorkerLost"))
        else:
            outcome = self.run_attempt(dispatch)
        written = OutputRef(name=output_object_name(dispatch.attempt_id), size=1, kept=1)  # as if it printed
        result = result_command(dispatch, "executor", msgspec.structs.replace(outcome, output_ref=written))
        if held is None:
            self.send(result)
        else:
            held.append(result)
        self.unsettled[message.number] -= 1
        return True

    def run_attempt(self, dispatch: Dispatch) -> AttemptOutcome:
        """The task on its inputs; with a values bucket, through it, as an executor runs it (losing an object its
        inputs name, now and then)."""
        if self.values is None:
            return run_attempt(dispatch.task.target, dispatch.inputs)
        named = sorted(_object_names(dispatch.inputs) & set(self.objects.objects))
        if named and self.chance(self.faults.object_lost):
            del self.objects.objects[self.rng.choice(named)]
            self.counts["objects_lost"] += 1

        async def call(inputs: dict[str, Any]) -> AttemptOutcome:
            return run_attempt(dispatch.task.target, inputs)

        stored = len(self.objects.objects)
        outcome: AttemptOutcome = complete(run_with_values(self.values, dispatch, call))
        self.counts["values_stored"] += len(self.objects.objects) - stored
        return outcome

    def timeout_of(self, dispatch: Dispatch) -> float | None:
        """The timeout of the dispatch's execution's workflow (hanging there is ended by the workflow's timeout)."""
        records = self.log.by_subject.get(subjects.execution_subject(PROJECT, DOMAIN, dispatch.execution_id), [])
        return replay(records).workflow.timeout_seconds if records else None

    def kill_ended(self) -> None:
        """The executor's check: a hanging attempt whose execution ended, or that the log failed (timed out), is
        killed and its dispatch acked without a result; one that the log still has running runs on."""
        for message, dispatch in list(self.hanging):
            state = replay(self.log.by_subject[subjects.execution_subject(PROJECT, DOMAIN, dispatch.execution_id)])
            attempt = state.nodes[dispatch.node].find_attempt(dispatch.attempt_id)
            if state.terminal or attempt is None or attempt.status in ("succeeded", "failed"):
                self.hanging.remove((message, dispatch))
                if state.terminal:
                    self.send(stopped_command(dispatch, "sim-executor", "killed"))
                self.unsettled[message.number] -= 1
                if not self.unsettled[message.number]:
                    del self.unsettled[message.number]
                    self.dispatches.ack(message, self.now)
                self.counts["attempts_killed"] += 1

    def fire_timer(self, timer: str) -> None:
        due, command, again = self.timers.pop(timer)
        self.send(command, again=again)
        self.counts["timers_fired"] += 1
        if not again and self.chance(self.faults.timer_twice):  # again after the duplicate window: not dropped
            self.timers[f"{timer}:again"] = (due + DUPLICATE_WINDOW + 1, command, True)

    # -- acks, dead letters, and the failure model ---------------------------------------------------------------

    def ack(self, queue: WorkQueue, message: Message) -> None:
        if self.chance(self.faults.ack_lost):
            queue.redeliver(message, self.now + ACK_WAIT)
            self.counts["acks_lost"] += 1
        else:
            queue.ack(message, self.now)

    def dead_letter(self, message: Message, reason: str) -> None:
        self.dead_letters[self.command_id(message.body)] = reason
        self.counts["dead_letters"] += 1

    @staticmethod
    def command_id(command: Any) -> str:
        return str(command.command.command_id if isinstance(command, ResolvedLaunch) else command.command_id)

    def check_decided(self, message: Message) -> None:
        """An acknowledged command was decided (its effect is in the log) or dead-lettered: never dropped."""
        command = message.body
        if self.command_id(command) in self.dead_letters:
            return
        records = self.log.by_subject.get(message.subject, [])
        if isinstance(command, ResolvedLaunch):
            if not records:
                self.fail(f"launch {command.command.command_id} was acknowledged, but nothing is in the log")
            return
        if not isinstance(command, ReportAttemptResult | ReportAttemptResults | AbortExecution) or not records:
            return
        state = replay(records)
        if state.terminal or any(r.command_id == command.command_id for r in state.rejected_commands):
            return
        if isinstance(command, AbortExecution):
            self.fail(f"abort {command.command_id} was acknowledged, but {state.execution_id} is {state.status}")
        for result in command.results if isinstance(command, ReportAttemptResults) else (command,):
            assert isinstance(result, ReportAttemptResult)
            if any(r.command_id == result.command_id for r in state.rejected_commands):
                continue
            node = state.nodes[result.node]
            ended = [
                a
                for a in node.all_attempts()
                if a.attempt_id == result.attempt_id and a.status in ("succeeded", "failed")
            ]
            if not ended and node.status not in ("succeeded", "failed"):
                self.fail(
                    f"result {result.command_id} of {command.command_id} was acknowledged, but the log does not have "
                    f"attempt {result.attempt_id} ended (node '{node.id}' is {node.status})"
                )

    def fail(self, message: str) -> None:
        raise SimulationFailed(f"seed {self.seed}, step {self.counts['steps']}: {message}")

    def check_appended(self, *, ended: bool = False) -> None:
        for subject in sorted(self.appended):
            problems = check_execution(self.log.by_subject[subject], ended=ended)
            if ended:
                problems += check_lineage(self.log.by_subject[subject])
            if problems:
                self.fail("; ".join(str(p) for p in problems))
        self.appended.clear()

    # -- the steps -----------------------------------------------------------------------------------------------

    def actions(self) -> list[Callable[[], None]]:
        """What may happen next."""
        possible: list[Callable[[], None]] = []
        if self.launches:
            possible.append(lambda: self.send(self.launches.pop(0)))
        for replica in self.replicas:
            if self.commands.visible(self.now):
                possible.append(lambda r=replica: self.pull(r))  # type: ignore[misc]
            if replica.held:
                possible += [lambda r=replica: self.handle(r)] * 3  # type: ignore[misc]
        if self.outbox_position < len(self.log.records):
            possible.append(self.outbox)
        if self.dispatches.visible(self.now):
            possible += [self.execute] * 2
        if self.hanging:
            possible.append(self.kill_ended)
        for timer in sorted(self.timers):
            if self.timers[timer][0] <= self.now and not (self.faulty and self.rng.random() < self.faults.timer_late):
                possible.append(lambda t=timer: self.fire_timer(t))  # type: ignore[misc]
        return possible

    def step(self) -> bool:
        """One thing happens; False when nothing can happen any more."""
        self.counts["steps"] += 1
        if self.chance(self.faults.replica_crash):
            self.rng.choice(self.replicas).crash()
        if self.chance(self.faults.server_crash):
            self.counts["acks_forgotten"] += self.commands.forget_acks(self.now) + self.dispatches.forget_acks(self.now)
        if self.chance(self.faults.abort) and self.log.by_subject:
            subject = self.rng.choice(sorted(self.log.by_subject))
            self.counts["aborts"] += 1
            execution_id = subject.rsplit(".", 1)[-1]
            self.send(AbortExecution(command_id=f"abort-{self.counts['aborts']}", execution_id=execution_id))
        possible = self.actions()
        if possible:
            self.rng.choice(possible)()
            self.now += self.rng.random() * 0.2
        elif not self.advance_clock():
            return False
        self.check_appended()
        return True

    def advance_clock(self) -> bool:
        """Jump to the next moment something can happen; False when nothing ever will."""
        moments = [t for t in (self.commands.next_visible(), self.dispatches.next_visible()) if t is not None]
        moments += [due for due, _, _ in self.timers.values()]
        later = [t for t in moments if t > self.now]
        if not later:
            return False
        self.now = min(later)
        return True

    def run(self, steps: int, quiescence_steps: int = 5_000) -> None:
        with structlog.testing.capture_logs(), _decisions_at(self.clock):
            for _ in range(steps):
                if not self.step():
                    break
            self.faulty = False
            for replica in self.replicas:  # nothing held back by a replica that would never come back to it
                for message in replica.held:
                    self.commands.redeliver(message, self.now)
                replica.held = []
            for _ in range(quiescence_steps):
                if not self.step():
                    break
            else:
                self.fail(f"not quiescent after {quiescence_steps} more steps")
        for subject in sorted(self.log.by_subject):
            self.appended.add(subject)
        self.check_appended(ended=True)
        if self.hanging:
            self.fail(f"attempts still running after their end: {[d.attempt_id for _, d in self.hanging]}")

    def log_digest(self) -> str:
        """One digest of every record stored, in order: equal for two runs of one seed."""
        return content_version([(r.sequence, r.subject, r.data.decode()) for r in self.log.records])


class _decisions_at:
    """``Decider`` reads the wall clock for a decision's time; in the simulator it reads the simulated one."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock

    def __enter__(self) -> None:
        clock = self.clock

        class SimulatedDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return clock()

        self.saved = vars(plait_scheduler.decisions)["datetime"]
        vars(plait_scheduler.decisions)["datetime"] = SimulatedDatetime

    def __exit__(self, *exc: object) -> None:
        vars(plait_scheduler.decisions)["datetime"] = self.saved


def simulate(seed: int, profile: str, steps: int = 400) -> World:
    """Run one seed of a profile; raises ``SimulationFailed`` naming the seed when a check fails."""
    chosen = PROFILES[profile]
    world = World(seed, chosen.faults, chosen.executions, chosen.replicas, chosen.shapes)
    try:
        world.run(steps)
    except SimulationFailed as failed:
        raise SimulationFailed(f"{failed}\nreplay: {replay_command(seed, profile)}", world) from None
    return world


def replay_command(seed: int, profile: str) -> str:
    return f"python -m tests.sim --seed {seed} --profile {profile} --trace"
