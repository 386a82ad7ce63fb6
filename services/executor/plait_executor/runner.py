"""One dispatch message through its attempts: for each, report started, run it while heartbeating, report the
result; ack the message once every attempt is settled (``plait_executor.held_message``).

While an attempt is held, its executor keeps the message in progress, moves the attempt's deadline timer on, and
watches its execution: once it has ended (aborted, failed fast, timed out), or the attempt itself was failed by the
scheduler (its timeout timer fired), the attempt is stopped, its worker killed, and it is settled without a
result (none is needed).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Literal

import anyio
import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from structlog.typing import FilteringBoundLogger

from plait import codec
from plait.adapters.commands import schedule_command
from plait.adapters.direct_reads import BatchUnsupported, last_messages
from plait.adapters.event_store import EventStore
from plait.adapters.output_store import OutputStore
from plait.core.commands import DEFAULT_ATTEMPT_DEADLINE_SECONDS, attempt_deadline
from plait.core.dispatch import Dispatch, dispatches_in
from plait.errors import TransportError
from plait.metrics.names import DEAD_LETTERS
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID, PLAIT_ERROR
from plait_executor import dispatch_trust, hand_on
from plait_executor.attempt import AttemptOutcome, system_error
from plait_executor.attempt_metrics import observe_attempt, observe_start
from plait_executor.backend import AttemptBackend
from plait_executor.hand_on import HAND_ON_SECONDS
from plait_executor.held_message import NAK_TIMEOUT_SECONDS, HeldMessage, ack
from plait_executor.reports import report_started_pipelined, report_stopped
from plait_executor.results import ResultReporter
from plait_executor.slots import AttemptSlots
from plait_executor.task_output import keep_output
from plait_executor.tracing import attempt_span

log: FilteringBoundLogger = structlog.get_logger("plait.executor")

STARTED_AFTER_SECONDS = 0.05
"""An attempt still running after this long reports ``started``; a quicker one sends only its result, which the
scheduler records as the start and the end together (two commands and two acks fewer per attempt)."""


_SHORTEST_TICK_SECONDS = 0.005

FINISHING_SECONDS = 60.0
"""How long an attempt whose own report is in the log (a pod's) may take to end by itself once its execution ended,
before it is stopped: its Job completes and keeps its pod's log."""

AFTER_RECONNECTION_SECONDS = 10.0  # how long after a reconnection dispatches are checked before they run
ENDED_REMEMBERED = 10_000  # executions seen ended, whose dispatches are skipped without asking the server
ATTEMPT_ENDED = frozenset({"succeeded", "failed", "stopped"})

Ran = Literal["ran", "handed_back", "handed_on", "stopped"]


@dataclass
class _HandOn:
    """Attempts of one message being handed on (``plait_executor.hand_on``): ``done`` once their copy is stored, or
    could not be (``stored`` says which)."""

    done: anyio.Event = field(default_factory=anyio.Event)
    stored: bool = False


@dataclass
class _Held:
    """An attempt being worked on: its message, when its deadline was last moved on (None: not started yet), and
    the scope that stops it when its execution ends."""

    message: HeldMessage
    log: FilteringBoundLogger
    dispatch: Dispatch
    execution_subject: str
    deadline_moved: float | None = None
    stop: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    execution_ended: bool = False  # why ``stop`` was cancelled: its execution ended (else: the attempt was failed)
    started_at: float = 0.0  # when a worker took it (anyio's clock)
    ended: bool = False  # its run ended: no ``started`` is due any more
    started_sent: anyio.Event | None = None  # its ``started`` was due: set once that command is on the wire
    reported: bool = False  # its result was given to the result reporter
    taken: bool = False  # a worker took it (or it ended before one did)
    reported_itself: float | None = None  # when a decision was first seen to hold its own report (a pod's)
    waiting: anyio.CancelScope | None = None  # its wait for a worker, while it waits
    waiting_since: float = 0.0
    hand_on: _HandOn | None = None  # set once it is being handed on to another replica


@dataclass(frozen=True)
class _Read:
    dispatches: list[Dispatch]
    execution_subject: str
    log: FilteringBoundLogger


Read = _Read | Exception
"""A dispatch message as it arrived: its attempts, or why it goes to the dead letters."""


class _NotStarted(Exception):
    """The executor is stopping: a dispatch that no worker has taken yet goes back to the server."""


class AttemptRunner:
    """Runs the attempts a dispatch message carries (one, or a chunk of a decision's) in the worker pool, side by
    side, and reports each.

    The message is acknowledged only once each attempt's result command is stored, so an executor that dies at any
    point leaves the message to be redelivered, and its attempts run again elsewhere (a redelivered chunk skips
    those its execution's log shows ended). While the message is held (its attempts waiting for a worker, then
    running), ``keep_in_progress`` keeps it in progress every ``heartbeat_seconds``. A dispatch on its
    ``max_deliveries``-th delivery is reported as a system failure instead of run: the executors it went to before
    were lost with it.
    """

    def __init__(
        self,
        js: JetStreamContext,
        backend: AttemptBackend,
        worker: str,
        heartbeat_seconds: float,
        started_after: float = STARTED_AFTER_SECONDS,
        max_deliveries: int = 0,
        deadline_seconds: float = DEFAULT_ATTEMPT_DEADLINE_SECONDS,
        reconnections: Callable[[], int] = lambda: 0,
        consumer: str = "",
        hand_on_seconds: float = HAND_ON_SECONDS,
        workers: int = 0,
    ) -> None:
        self.js = js
        self.consumer = consumer  # the dispatch consumer it pulls from: where another replica may ask for work
        self.hand_on_seconds = hand_on_seconds
        self.workers = workers  # how many attempts its back end runs at once (0: it does not say)
        self.handed_on = 0  # attempts handed on to another replica
        self.reconnections = reconnections  # how often the connection was established again
        self._reconnections_seen = 0
        self._checking_until = -math.inf  # after a reconnection: every dispatch's attempts are looked up first
        self.results = ResultReporter(js, worker)
        self.outputs = OutputStore(js)
        self.started_after = started_after
        self.backend = backend
        self.worker = worker
        self.heartbeat_seconds = heartbeat_seconds
        self.max_deliveries = max_deliveries
        self.deadline_seconds = deadline_seconds
        self._ended: OrderedDict[str, None] = OrderedDict()  # execution subjects seen ended
        self.stopping = False
        self._messages: dict[int, HeldMessage] = {}  # by id(msg)
        self._held: dict[int, _Held] = {}  # attempts, by id(_Held)
        self._starting: deque[_Held] = deque()  # attempts taken by a worker, oldest first, until ``started`` is due
        self.attempts = 0
        self.execution_checks = 0  # reads of the last decisions of held attempts' executions

    def counts(self) -> dict[str, int]:
        """Attempts run, the result commands that reported them, and the looks at held attempts' executions."""
        return {
            "attempts": self.attempts,
            "result_commands": self.results.commands,
            "execution_checks": self.execution_checks,
            "handed_on": self.handed_on,
        }

    def stop_taking(self) -> None:
        """From now on, hand back the dispatches that are held but not yet running, for another replica."""
        self.stopping = True
        for held in list(self._held.values()):
            if held.waiting is not None:
                held.waiting.cancel()

    def read(self, msg: Msg, slots: AttemptSlots) -> Read:
        """What a dispatch message that just arrived carries (or why it is to be dead-lettered: untrusted,
        unreadable). The puller took one of ``slots`` for the message; here one more is taken for each further
        attempt, at once, so that the next pull request counts them."""
        if (untrusted := dispatch_trust.refusal(msg)) is not None:
            return untrusted
        try:
            dispatches = hand_on.listed(dispatches_in(codec.dispatch_record_decoder.decode(msg.data)), msg)
            execution_subject = subjects.execution_subject(
                dispatches[0].project, dispatches[0].domain, dispatches[0].execution_id
            )
        except (msgspec.DecodeError, ValueError) as exc:
            return exc
        slots.take(len(dispatches) - 1)
        message_log = log.bind(execution=dispatches[0].execution_id, delivery=msg.metadata.num_delivered)
        if len(dispatches) == 1:
            message_log = message_log.bind(node=dispatches[0].node, attempt=dispatches[0].attempt_id)
        return _Read(dispatches, execution_subject, message_log)

    async def handle(self, msg: Msg, read: Read, slots: AttemptSlots) -> None:
        """Run the attempts of a dispatch message, ``read`` as it arrived, holding a slot of ``slots`` for each; each
        slot is released once its attempt is settled."""
        unsettled = 1 if isinstance(read, Exception) else len(read.dispatches)
        try:
            if isinstance(read, Exception):
                await self._dead_letter(msg, read)
                return
            dispatches, execution_subject, message_log = read.dispatches, read.execution_subject, read.log
            after_outage = self._after_reconnection()
            if execution_subject in self._ended or (
                (after_outage or _waited(msg, self.heartbeat_seconds)) and await self._ended_now(execution_subject)
            ):
                message_log.info("dispatch_skipped", reason="its execution ended", attempts=len(dispatches))
                await ack(msg, message_log)
                return
            if after_outage or (len(dispatches) > 1 and msg.metadata.num_delivered > 1):
                dispatches = await self._not_ended(dispatches, execution_subject, message_log)
                slots.release(unsettled - len(dispatches))
                unsettled = len(dispatches)
                if not dispatches:
                    await ack(msg, message_log)
                    return
            if self.max_deliveries and hand_on.deliveries(msg) >= self.max_deliveries:
                await self._give_up(dispatches, msg, message_log)
                return
            message = self._messages[id(msg)] = HeldMessage(msg, len(dispatches), message_log)
            unsettled = 0  # from here on, each attempt releases its own slot once settled
            try:
                if len(dispatches) == 1:  # no task of its own: one turn of the event loop fewer before it runs
                    await self._attempt(message, dispatches[0], execution_subject, slots)
                else:
                    async with anyio.create_task_group() as attempts:
                        for dispatch in dispatches:
                            attempts.start_soon(self._attempt, message, dispatch, execution_subject, slots)
            finally:
                del self._messages[id(msg)]
                unsettled = message.unsettled  # attempts cancelled before they began: handed back
                if unsettled:
                    await message.settle(handed_back=True, attempts=unsettled)
        finally:
            slots.release(unsettled)

    async def _attempt(
        self, message: HeldMessage, dispatch: Dispatch, execution_subject: str, slots: AttemptSlots
    ) -> None:
        msg = message.msg
        attempt_log = log.bind(
            execution=dispatch.execution_id,
            node=dispatch.node,
            attempt=dispatch.attempt_id,
            delivery=msg.metadata.num_delivered,
        )
        held = _Held(message, attempt_log, dispatch, execution_subject)
        self._held[id(held)] = held
        self.results.expect(dispatch)
        try:
            with attempt_span(dispatch, msg):
                ran = await self._run(dispatch, attempt_log, held)
        except anyio.get_cancelled_exc_class():
            attempt_log.warning("attempt_abandoned")
            slots.release()
            await message.settle(handed_back=True)
            raise
        finally:
            del self._held[id(held)]
            self._taken(held)
            if not held.reported:
                self.results.forgo(dispatch)
            if slots.paused:
                slots.pause(self._busy_with_long_work(anyio.current_time()))
        handed_back = ran == "handed_back"
        if ran == "handed_on" and held.hand_on is not None:
            await held.hand_on.done.wait()
            handed_back = not held.hand_on.stored  # else the copy carries it: settled here
        if handed_back:
            attempt_log.info("dispatch_handed_back")
        elif ran == "stopped":
            attempt_log.warning("attempt_stopped", reason="its execution or the attempt itself ended")
        slots.release()
        await message.settle(handed_back=handed_back)

    def _after_reconnection(self) -> bool:
        """Whether the connection was established again within ``AFTER_RECONNECTION_SECONDS``: a server that crashed
        may have lost the acknowledgements of its last fraction of a second (they are written to disk a moment after
        they are taken, unlike the messages), and sends those dispatches again as if new."""
        reconnections = self.reconnections()
        if reconnections != self._reconnections_seen:
            self._reconnections_seen = reconnections
            self._checking_until = anyio.current_time() + AFTER_RECONNECTION_SECONDS
        return anyio.current_time() < self._checking_until

    async def _not_ended(
        self, dispatches: list[Dispatch], execution_subject: str, message_log: FilteringBoundLogger
    ) -> list[Dispatch]:
        """The attempts of a redelivered chunk that its execution's log does not show ended: the executor it went to
        before may have stored some results (and stopped, or died, before the others). A result stored but not yet
        decided is not seen here: its attempt runs again, and the scheduler keeps the first result (as when an
        executor dies between storing a result and acking). When the log cannot be read, all of them run."""
        try:
            state = await EventStore(self.js).load(execution_subject)
        except (nats.errors.Error, TransportError, msgspec.DecodeError, ValueError) as exc:
            message_log.warning("execution_unread", error=repr(exc))
            return dispatches
        if state is None:
            return dispatches
        left = []
        for dispatch in dispatches:
            node = state.nodes.get(dispatch.node)
            attempt = node.find_attempt(dispatch.attempt_id) if node is not None else None
            if attempt is not None and attempt.status in ATTEMPT_ENDED:
                message_log.info("dispatch_skipped", reason="its attempt ended", attempt=dispatch.attempt_id)
            else:
                left.append(dispatch)
        return left

    async def _give_up(self, dispatches: list[Dispatch], msg: Msg, message_log: FilteringBoundLogger) -> None:
        """Report the attempts of a dispatch on its last delivery as system failures, instead of running them."""
        deliveries = hand_on.deliveries(msg)
        error = system_error(
            f"delivered {deliveries} times; the executor was lost each time", "DispatchDeliveriesExhausted"
        )
        async with anyio.create_task_group() as reports:
            for dispatch in dispatches:
                attempt_log = message_log.bind(node=dispatch.node, attempt=dispatch.attempt_id)
                attempt_log.error("dispatch_deliveries_exhausted", deliveries=deliveries)
                reports.start_soon(
                    partial(self.results.report, dispatch, AttemptOutcome(error=error), attempt_log, expected=False)
                )
        await ack(msg, message_log)

    async def _run(self, dispatch: Dispatch, attempt_log: FilteringBoundLogger, held: _Held) -> Ran:
        """Run the attempt and store its result: "handed_back" when the executor stopped before a worker took it,
        "stopped" when its execution ended first (nothing is reported then).

        ``started`` is sent once the attempt has run for ``STARTED_AFTER_SECONDS`` (``report_started_when_due``), and
        stored while it runs; the result is sent after it on the same connection, so JetStream stores them in that
        order. A quicker attempt sends its result alone.
        """
        started = 0.0
        waiting = held.waiting = anyio.CancelScope()
        held.waiting_since = anyio.current_time()

        def on_start() -> None:
            nonlocal started
            held.waiting = None
            if self.stopping or held.hand_on is not None:
                raise _NotStarted
            self._taken(held)
            if not self.backend.reports_itself:
                held.started_at = anyio.current_time()
                self._starting.append(held)
            held.deadline_moved = -math.inf  # moved on at the next heartbeat
            attempt_log.info("attempt_started", task=dispatch.task.name, version=dispatch.task.version)
            started = time.perf_counter()
            self.attempts += 1
            observe_start(held.message.msg)

        try:
            with waiting, held.stop:
                outcome = await self.backend.run(dispatch, on_start=on_start)
        except _NotStarted:
            return _untaken(held)
        finally:
            held.waiting = None
            held.ended = True
        if held.stop.cancel_called:  # its execution ended: the worker, if it had one, was killed
            how = await self.backend.stop(dispatch)
            if held.execution_ended:
                await report_stopped(self.js, dispatch, self.worker, how if started else "not started", attempt_log)
            return "stopped"
        if waiting.cancel_called:  # stopped, or handed on, while waiting for a worker
            return _untaken(held)
        if outcome is None:  # the attempt reported itself
            attempt_log.info("attempt_ended", seconds=round(time.perf_counter() - started, 6))
            return "ran"
        _log_outcome(attempt_log, outcome, time.perf_counter() - started)
        observe_attempt(
            dispatch.task.name, outcome.error.kind if outcome.error else None, time.perf_counter() - started
        )
        outcome = await keep_output(self.outputs, dispatch, outcome, attempt_log)
        if held.started_sent is not None:
            await held.started_sent.wait()
        self._taken(held)  # also when it ended before a worker took it (refused, say): nothing of it waits any more
        held.reported = True
        await self.results.report(dispatch, outcome, attempt_log)
        return "ran"

    def _taken(self, held: _Held) -> None:
        """The attempt no longer waits for a worker: the result reporter is told, once."""
        if not held.taken:
            held.taken = True
            self.results.started(held.dispatch)

    async def report_started_when_due(self) -> None:
        """Until cancelled: send ``started`` for each attempt that has run for ``started_after`` (one loop for all,
        not a timer per attempt), and publish it again until it is stored; its result waits until it is on the
        wire, so JetStream stores the two in that order."""
        async with anyio.create_task_group() as reports:
            while True:
                await anyio.sleep(max(self.started_after / 2, _SHORTEST_TICK_SECONDS))
                now = anyio.current_time()
                while self._starting and now - self._starting[0].started_at >= self.started_after:
                    held = self._starting.popleft()
                    if not held.ended:
                        held.started_sent = anyio.Event()
                        reports.start_soon(
                            report_started_pipelined, self.js, held.dispatch, self.worker, held.log, held.started_sent
                        )

    async def hand_on_waiting(self, slots: AttemptSlots, asking_here: Callable[[], bool]) -> None:
        """Until cancelled: pause pulling while every worker is busy on a long attempt (``slots`` asks for nothing:
        what it took would wait, while another replica may have a free worker); and hand on the attempts that have
        waited ``hand_on_seconds`` for a worker, when this replica asks for no dispatch and another one
        does (``plait_executor.hand_on``; ``asking_here``: whether a pull request of this replica is waiting)."""
        while True:
            await anyio.sleep(self.hand_on_seconds / 2)
            now = anyio.current_time()
            slots.pause(self._busy_with_long_work(now))
            due: dict[int, list[_Held]] = {}
            for held in self._held.values():
                if self._may_hand_on(held) and now - held.waiting_since >= self.hand_on_seconds:
                    due.setdefault(id(held.message), []).append(held)
            if not due or self.stopping or not self.consumer or asking_here():
                continue
            try:
                if not await hand_on.someone_asks(self.js, self.consumer):
                    continue
            except nats.errors.Error as exc:
                log.warning("hand_on_unchecked", error=repr(exc))
                continue
            for waiting in due.values():
                await self._hand_on([held for held in waiting if self._may_hand_on(held)])

    def _busy_with_long_work(self, now: float) -> bool:
        """Whether every worker runs an attempt that started at least half the hand-on wait ago."""
        running = [held for held in self._held.values() if held.started_at and not held.ended]
        long_ago = self.hand_on_seconds / 2
        return 0 < self.workers <= len(running) and all(now - held.started_at >= long_ago for held in running)

    @staticmethod
    def _may_hand_on(held: _Held) -> bool:
        """Whether an attempt still waits for a worker (and is not being handed on already)."""
        return held.waiting is not None and held.hand_on is None

    async def _hand_on(self, waiting: list[_Held]) -> None:
        """Publish a copy of the attempts' message for them; each settles once that is stored, or fails."""
        if not waiting:
            return
        handing = _HandOn()
        for held in waiting:
            held.hand_on = handing
            if held.waiting is not None:
                held.waiting.cancel()
        message = waiting[0].message
        try:
            with anyio.move_on_after(NAK_TIMEOUT_SECONDS):
                await hand_on.publish_copy(self.js, message.msg, [held.dispatch for held in waiting])
                handing.stored = True
        except nats.errors.Error as exc:
            message.log.warning("hand_on_failed", error=repr(exc))
        finally:
            handing.done.set()
        if handing.stored:
            self.handed_on += len(waiting)
            message.log.info("attempts_handed_on", attempts=[held.dispatch.attempt_id for held in waiting])

    async def keep_in_progress(self) -> None:
        """Until cancelled: tell the server every ``heartbeat_seconds`` that each held message is still being worked
        on, move the deadlines of running attempts on, and stop the attempts of executions that ended (one loop for
        all of them, not a task per attempt)."""
        checked = anyio.current_time()
        while True:
            await anyio.sleep(self.heartbeat_seconds / 3)
            now = anyio.current_time()
            for message in list(self._messages.values()):
                if now - message.since >= self.heartbeat_seconds:
                    message.since = now
                    try:
                        await message.msg.in_progress()
                    except nats.errors.Error as exc:
                        message.log.warning("heartbeat_failed", error=repr(exc))
            with anyio.move_on_after(self.heartbeat_seconds):  # NATS may be away: the next round tries again
                await self._move_deadlines(now)
                if now - checked >= self.heartbeat_seconds:
                    checked = now
                    await self._stop_ended_executions()

    async def _move_deadlines(self, now: float) -> None:
        """Set the deadline of each running attempt ``deadline_seconds`` ahead, every third of it: the scheduler
        fails an attempt only when its executor has stopped saying it is alive."""
        due = [
            held
            for held in self._held.values()
            if held.deadline_moved is not None and now - held.deadline_moved >= self.deadline_seconds / 3
        ]
        for held in due:
            dispatch = held.dispatch
            deadline = attempt_deadline(
                dispatch.execution_id, dispatch.node, dispatch.attempt_id, self.deadline_seconds
            )
            at = datetime.now(UTC) + timedelta(seconds=self.deadline_seconds)
            try:
                await schedule_command(self.js, deadline, dispatch.project, dispatch.domain, deadline.timer, at)
            except nats.errors.Error as exc:
                held.log.warning("deadline_not_moved", error=repr(exc))
                continue
            held.deadline_moved = now

    async def _stop_ended_executions(self) -> None:
        """Read the last decision of each held attempt's execution; stop the attempts of those that ended, and the
        attempts it failed (timed out; the pool's own timeout is the backstop if this read misses it)."""
        by_execution: dict[str, list[_Held]] = {}
        for held in self._held.values():
            by_execution.setdefault(held.execution_subject, []).append(held)
        if not by_execution:
            return
        try:
            last = await last_messages(self.js, subjects.EVENTS_STREAM, list(by_execution))
        except (BatchUnsupported, TransportError, nats.errors.Error) as exc:
            log.warning("execution_check_failed", executions=len(by_execution), error=repr(exc))
            return
        self.execution_checks += 1
        now = anyio.current_time()
        for subject, raw in last.items():
            try:
                ended = codec.ends_execution(raw.data or b"")
                endings = codec.attempt_endings(raw.data or b"")
            except msgspec.DecodeError:
                continue  # not a decision this executor can read: the scheduler's deadline still ends the attempt
            if ended:
                self._remember_ended(subject)
            for held in by_execution.get(subject, []):
                if held.dispatch.attempt_id in endings.reported and held.reported_itself is None:
                    held.reported_itself = now
                if held.dispatch.attempt_id in endings.failed or (ended and not self._finishing(held, now)):
                    held.execution_ended = ended  # else its result is no longer wanted (it timed out, say)
                    held.stop.cancel()

    @staticmethod
    def _finishing(held: _Held, now: float) -> bool:
        """Whether an attempt that reported its own result (a pod's) is left to end by itself: its process is
        exiting, and a Kubernetes Job deleted now would lose its pod's log. One still held long after is stopped."""
        return held.reported_itself is not None and now - held.reported_itself < FINISHING_SECONDS

    async def _ended_now(self, execution_subject: str) -> bool:
        """Whether the execution's last decision ended it; when that cannot be read (NATS away, an unreadable
        record), the attempt runs, and the heartbeat's check stops it later if need be."""
        try:
            raw = await self.js.get_msg(subjects.EVENTS_STREAM, subject=execution_subject, direct=True)
            ended = codec.ends_execution(raw.data or b"")
        except (nats.errors.Error, msgspec.DecodeError) as exc:
            log.debug("execution_unchecked", execution_subject=execution_subject, error=repr(exc))
            return False
        if ended:
            self._remember_ended(execution_subject)
        return ended

    def _remember_ended(self, execution_subject: str) -> None:
        self._ended[execution_subject] = None
        while len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)

    async def _dead_letter(self, msg: Msg, error: Exception) -> None:
        """Move an unreadable dispatch aside: no attempt can be reported for it, and redelivery cannot help."""
        metadata = msg.metadata
        log.error("dispatch_unreadable", subject=msg.subject, sequence=metadata.sequence.stream, error=str(error))
        headers = {
            NATS_MSG_ID: f"{subjects.DISPATCH_STREAM}:{metadata.sequence.stream}",
            PLAIT_ERROR: str(error)[:1000],
        }
        try:
            await self.js.publish(
                subjects.dead_letter_subject(msg.subject), msg.data, headers=headers, stream=subjects.DEAD_LETTER_STREAM
            )
        except nats.errors.Error as exc:
            log.warning("dead_letter_failed", error=repr(exc))  # it stays in the queue, to be tried again
            return
        DEAD_LETTERS.inc()
        await ack(msg, log)


def _untaken(held: _Held) -> Ran:
    """How an attempt that no worker took ended: handed on to another replica, or handed back to the server."""
    return "handed_on" if held.hand_on is not None else "handed_back"


def _waited(msg: Msg, seconds: float) -> bool:
    """Whether a dispatch was delivered before, or stored more than ``seconds`` ago: its execution may have ended
    meanwhile, so it is worth a look before running it (a fresh one runs at once)."""
    metadata = msg.metadata
    return metadata.num_delivered > 1 or datetime.now(UTC) - metadata.timestamp > timedelta(seconds=seconds)


def _log_outcome(attempt_log: FilteringBoundLogger, outcome: AttemptOutcome, seconds: float) -> None:
    if outcome.error is None:
        attempt_log.info("attempt_succeeded", seconds=round(seconds, 6))
    else:
        attempt_log.warning(
            "attempt_failed",
            seconds=round(seconds, 6),
            kind=outcome.error.kind,
            error_type=outcome.error.error_type,
            message=outcome.error.message,
        )
