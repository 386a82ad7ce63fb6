"""The local executor: running one attempt, the warm worker pool, and the service against a real nats-server."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
import nats
import nats.js.errors
import pytest
import structlog.testing
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from plait import codec
from plait.adapters.streams import ensure_streams
from plait.core.commands import Command, ReportAttemptResult, ReportAttemptResults, ReportAttemptStarted
from plait.core.dispatch import ChunkedAttempt, Dispatch, DispatchChunk
from plait.core.ids import attempt_id, new_execution_id
from plait.core.model import TaskTarget
from plait.metrics.names import REGISTRY
from plait.protocol import subjects
from plait.protocol.headers import PLAIT_ATTEMPTS, PLAIT_ERROR
from plait.sdk.hints import encode_value
from plait.sdk.loader import load_module
from plait.sdk.task import Task
from plait.settings import load_settings
from plait_executor import ExecutorService, WorkerPool, run_attempt
from plait_executor.attempt import CODE_VERSION_MISMATCH, AttemptOutcome
from plait_executor.backend import LocalBackend, backend_from_settings
from plait_executor.results import ResultReporter
from plait_executor.service import ACK_WAIT_SECONDS, MAX_DELIVERIES
from plait_executor.worker_wear import LEAKED_THREADS_LIMIT, MIB, WorkerLimits
from tests import executor_tasks as tasks
from tests.helpers.dispatches import first_attempt
from tests.helpers.queues import waiting
from tests.helpers.registered_tasks import register_task

DEADLINE = 20.0
PROJECT, DOMAIN = "proj", "dev"

Report = ReportAttemptStarted | ReportAttemptResult


# --- run_attempt: one attempt in this process ---------------------------------------------------------


def test_run_attempt_returns_the_single_output() -> None:
    outcome = run_attempt(tasks.add.spec.target, {"a": 2, "b": 3}, tasks.add.spec.version)
    assert outcome.succeeded
    assert outcome.outputs == {"result": 5}


def test_run_attempt_names_named_tuple_outputs() -> None:
    outcome = run_attempt(tasks.divide.spec.target, {"a": 7, "b": 2})
    assert outcome.outputs == {"quotient": 3, "remainder": 1}


def test_run_attempt_decodes_structs_and_bytes_and_encodes_them_back() -> None:
    inputs = {"point": encode_value(tasks.Point(1, 2)), "payload": encode_value(b"abc")}
    assert run_attempt(tasks.describe.spec.target, inputs).outputs == {"result": "1,2:abc"}
    assert run_attempt(tasks.mirror.spec.target, inputs).outputs == {"result": {"x": 5, "y": 1}}


def test_run_attempt_has_no_outputs_for_a_task_returning_none() -> None:
    assert run_attempt(tasks.nothing.spec.target, {}).outputs == {}


def test_a_raising_task_is_a_user_error_with_the_traceback_of_its_code() -> None:
    outcome = run_attempt(tasks.fail.spec.target, {"message": "bad input"})
    assert outcome.outputs is None
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.message, outcome.error.error_type) == ("user", "bad input", "ValueError")
    assert outcome.error.traceback.startswith("Traceback (most recent call last):\n")
    assert "executor_tasks.py" in outcome.error.traceback
    assert "raise ValueError(message)" in outcome.error.traceback
    assert "plait_executor" not in outcome.error.traceback


@pytest.mark.parametrize(
    ("target", "inputs", "error_type", "message"),
    [
        (TaskTarget("no_such_module_here", "f"), {}, "TaskNotLoadable", "No module named 'no_such_module_here'"),
        (TaskTarget(tasks.__name__, "missing"), {}, "TaskNotLoadable", "has no attribute 'missing'"),
        (TaskTarget(tasks.__name__, "not_a_task"), {}, "TaskNotLoadable", "is function, not a @task"),
        (tasks.add.spec.target, {"a": "one", "b": 2}, "InputError", "input 'a': Expected `int`, got `str`"),
        (tasks.add.spec.target, {"a": 1, "b": 2, "c": 3}, "InputError", "has no input 'c'"),
        (tasks.wrong_type.spec.target, {}, "OutputError", "output 'result': Expected `int`, got `str`"),
    ],
)
def test_what_the_task_cannot_help_is_a_system_error(
    target: TaskTarget, inputs: dict[str, Any], error_type: str, message: str
) -> None:
    outcome = run_attempt(target, inputs)
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.error_type) == ("system", error_type)
    assert message in outcome.error.message


def test_code_of_another_version_is_refused() -> None:
    outcome = run_attempt(tasks.add.spec.target, {"a": 1, "b": 2}, version="0" * 32)
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.error_type) == ("system", CODE_VERSION_MISMATCH)


# --- the worker pool ------------------------------------------------------------------------------------


def release(path: Path, text: str = "done") -> None:
    """Let a ``wait_for_file`` task finish, returning ``text``: the file appears whole, at once."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)


async def test_a_dying_worker_fails_only_its_own_attempt(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    outcomes: dict[str, Any] = {}
    async with WorkerPool(2) as pool:

        async def wait() -> None:
            outcomes["wait"] = await pool.run(tasks.wait_for_file.spec.target, {"path": str(gate)})

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                died = await pool.run(tasks.die.spec.target, {"code": 3})
                release(gate, "still here")
        after = await pool.run(tasks.add.spec.target, {"a": 1, "b": 1})

    assert died.error is not None
    assert (died.error.kind, died.error.error_type) == ("system", "WorkerLost")
    assert "exit code 3" in died.error.message
    assert outcomes["wait"].outputs == {"result": "still here"}
    assert after.outputs == {"result": 2}
    assert multiprocessing.active_children() == []


async def test_a_warm_workers_next_attempt_finds_the_directory_and_environment_the_last_one_found(
    tmp_path: Path,
) -> None:
    async with WorkerPool(1) as pool:
        with anyio.fail_after(DEADLINE):
            before = await pool.run(tasks.surroundings.spec.target, {})
            (worker,) = pool.worker_pids
            moved = await pool.run(tasks.move_and_change_environment.spec.target, {"folder": str(tmp_path)})
            after = await pool.run(tasks.surroundings.spec.target, {})
            workers_after = pool.worker_pids
    assert moved.outputs == {"result": str(tmp_path)}, "the task moved, in this worker"
    assert before.outputs is not None
    assert before.outputs["result"]["left_by_a_task"] is None and before.outputs["result"]["path_set"]
    assert after.outputs == before.outputs, "put back: the directory, the variable set, PATH, the logging handler"
    assert workers_after == [worker], "by the same warm worker"


async def test_what_importing_a_tasks_module_set_in_the_environment_stays_for_its_next_attempts() -> None:
    target = TaskTarget(module="tests.import_environment_tasks", qualname="set_on_import")
    async with WorkerPool(1) as pool:
        with anyio.fail_after(DEADLINE):
            first = await pool.run(target, {})  # imports the module
            second = await pool.run(target, {})
    assert first.outputs == second.outputs == {"result": "yes"}
    assert "PLAIT_TEST_SET_ON_IMPORT" not in os.environ, "the module was imported by the worker only"


async def _pids_after_each(pool: WorkerPool, runs: list[tuple[Task[..., Any], dict[str, Any]]]) -> list[int]:
    """Run each attempt in turn on a one-worker pool; the worker's pid after each (the first: before any)."""
    (first,) = pool.worker_pids
    pids = [first]
    with anyio.fail_after(DEADLINE):
        for task, inputs in runs:
            outcome = await pool.run(task.spec.target, inputs)
            assert outcome.error is None, outcome.error
            (pid,) = pool.worker_pids
            pids.append(pid)
    return pids


def _replaced(reason: str) -> float:
    return REGISTRY.get_sample_value("plait_workers_replaced_total", {"reason": reason}) or 0.0


async def test_a_worker_past_its_memory_limit_is_replaced_after_its_attempt() -> None:
    before = _replaced("memory")
    with structlog.testing.capture_logs() as logs:
        async with WorkerPool(1, limits=WorkerLimits(max_memory_bytes=256 * MIB)) as pool:
            pids = await _pids_after_each(
                pool,
                [
                    (tasks.hold_memory, {"mib": 1}),
                    (tasks.hold_memory, {"mib": 300}),
                    (tasks.add, {"a": 1, "b": 1}),
                ],
            )
    assert pids[0] == pids[1] != pids[2] == pids[3], "kept under the limit, replaced once past it"
    assert _replaced("memory") == before + 1
    [replaced] = [entry for entry in logs if entry["event"] == "worker_replaced"]
    assert replaced["pid"] == pids[1] and "passed PLAIT_WORKER_MAX_MEMORY_MB=256" in replaced["detail"]


async def test_a_worker_whose_tasks_left_many_threads_running_is_replaced() -> None:
    async with WorkerPool(1) as pool:
        pids = await _pids_after_each(
            pool,
            [
                (tasks.leave_threads, {"count": 1}),
                (tasks.leave_threads, {"count": LEAKED_THREADS_LIMIT + 1}),
                (tasks.add, {"a": 1, "b": 1}),
            ],
        )
    assert pids[0] == pids[1] != pids[2] == pids[3], "a thread or two left is tolerated, more than the limit not"


async def test_a_worker_is_replaced_after_its_most_attempts() -> None:
    async with WorkerPool(1, limits=WorkerLimits(max_attempts=2)) as pool:
        pids = await _pids_after_each(pool, [(tasks.add, {"a": 1, "b": n}) for n in range(5)])
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]


async def test_the_worker_limits_are_taken_from_the_settings() -> None:
    settings = load_settings({"PLAIT_WORKER_MAX_MEMORY_MB": "100", "PLAIT_WORKER_MAX_ATTEMPTS": "3"})
    async with backend_from_settings(settings, 1)() as backend:
        assert isinstance(backend, LocalBackend)
        assert backend.pool.limits == WorkerLimits(max_memory_bytes=100 * MIB, max_attempts=3)


async def test_an_attempt_past_its_timeout_is_killed_and_its_worker_replaced(tmp_path: Path) -> None:
    async with WorkerPool(1) as pool:
        (before,) = pool.worker_pids
        with anyio.fail_after(DEADLINE):
            timed_out = await pool.run(
                tasks.wait_for_file_briefly.spec.target,
                {"path": str(tmp_path / "never")},
                timeout_seconds=tasks.wait_for_file_briefly.spec.timeout_seconds,
            )
            after = await pool.run(tasks.add.spec.target, {"a": 1, "b": 1})
        (replacement,) = pool.worker_pids

    assert timed_out.error is not None
    assert (timed_out.error.kind, timed_out.error.message) == ("user", "timed out after 0.5 s")
    assert after.outputs == {"result": 2}
    assert replacement != before
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)


@pytest.fixture
def changing_module(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    name = f"changing_{tmp_path.name}"
    yield tmp_path / f"{name}.py", name
    sys.modules.pop(name, None)


def load_task(path: Path, name: str, source: str) -> Task[..., Any]:
    path.write_text(f"from plait import task\n\n\n@task\ndef answer() -> int:\n    return {source}\n")
    sys.modules.pop(name, None)
    loaded: Task[..., Any] = load_module(name, str(path)).answer
    return loaded


async def test_a_worker_holding_old_code_is_replaced_by_one_that_loads_the_new(
    changing_module: tuple[Path, str],
) -> None:
    path, name = changing_module
    first = load_task(path, name, "1").spec
    async with WorkerPool(1) as pool:
        with anyio.fail_after(DEADLINE):
            assert (await pool.run(first.target, {}, version=first.version)).outputs == {"result": 1}
            (warm,) = pool.worker_pids
            second = load_task(path, name, "2").spec
            assert (await pool.run(second.target, {}, version=second.version)).outputs == {"result": 2}
            stale = await pool.run(first.target, {}, version=first.version)
        assert pool.worker_pids != [warm]
    assert stale.error is not None and stale.error.error_type == CODE_VERSION_MISMATCH


async def test_a_worker_that_imported_a_module_before_a_task_was_added_to_it_is_replaced(
    changing_module: tuple[Path, str],
) -> None:
    path, name = changing_module
    first = load_task(path, name, "1").spec
    async with WorkerPool(1) as pool:
        with anyio.fail_after(DEADLINE):
            assert (await pool.run(first.target, {}, version=first.version)).outputs == {"result": 1}
            (warm,) = pool.worker_pids
            path.write_text(path.read_text() + "\n\n@task\ndef added() -> int:\n    return 3\n")
            sys.modules.pop(name, None)
            added = load_module(name, str(path)).added.spec
            outcome = await pool.run(added.target, {}, version=added.version)
        assert pool.worker_pids != [warm]
    assert outcome.outputs == {"result": 3}, outcome.error


ORPHAN_SCRIPT = """
import os
import sys
import anyio
from plait_executor import WorkerPool
from tests import executor_tasks as tasks
from tests.helpers.registered_tasks import register_task

async def main() -> None:
    async with WorkerPool(1) as pool:
        stdout = f"/proc/{os.getpid()}/fd/1"  # the worker's own output is captured: it announces itself here
        await pool.run(tasks.announce_then_wait.spec.target, {"path": sys.argv[1], "announce_to": stdout})

if __name__ == "__main__":
    anyio.run(main)
"""


async def test_a_worker_ends_when_its_executor_is_killed_mid_attempt(tmp_path: Path) -> None:
    script = tmp_path / "executor.py"
    script.write_text(ORPHAN_SCRIPT)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with anyio.fail_after(DEADLINE):
        async with await anyio.open_process(
            [sys.executable, str(script), str(tmp_path / "never")], env=environment
        ) as executor_process:
            assert executor_process.stdout is not None
            announcement = b""
            while b"\n" not in announcement:
                announcement += await executor_process.stdout.receive()
            worker_pid = int(announcement.split()[-1])
            worker = os.pidfd_open(worker_pid)
            executor_process.kill()
        try:
            await anyio.wait_readable(worker)  # readable once the worker process has ended
        finally:
            os.close(worker)


# --- the service ----------------------------------------------------------------------------------------


def dispatch_of(task: Task[..., Any], inputs: dict[str, Any], node: str = "n0") -> Dispatch:
    encoded = {name: encode_value(value) for name, value in inputs.items()}
    return first_attempt(task.spec, encoded, node=node, project=PROJECT, domain=DOMAIN)


class Commands:
    """Every command published, as it is published: a plain subscription, so it also sees the repeats that
    JetStream stores only once. Commands are kept by attempt until a test asks for them."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.unread: dict[str, list[Report]] = defaultdict(list)

    async def of(self, dispatch: Dispatch, count: int = 2) -> list[Report]:
        """The next ``count`` commands about ``dispatch``'s attempt, in the order they were published."""
        unread = self.unread[dispatch.attempt_id]
        while len(unread) < count:
            msg = await self.subscription.next_msg(timeout=DEADLINE)
            command = codec.command_decoder.decode(msg.data)
            for report in command.results if isinstance(command, ReportAttemptResults) else (command,):
                assert isinstance(report, Report)
                self.unread[report.attempt_id].append(report)
        found, unread[:] = unread[:count], unread[count:]
        return found

    async def result_of(self, dispatch: Dispatch) -> ReportAttemptResult:
        while True:
            (command,) = await self.of(dispatch, 1)
            if isinstance(command, ReportAttemptResult):
                return command


class Cluster:
    """A client of the test's nats-server: publishes dispatches, reads what the streams hold."""

    def __init__(self, nc: NATS, js: JetStreamContext, commands: Commands) -> None:
        self.nc, self.js, self.commands = nc, js, commands

    async def dispatch(self, dispatch: Dispatch, queue: str = "default") -> None:
        await register_task(self.js, dispatch)
        await self.js.publish(subjects.dispatch_subject("local", queue), codec.encode(dispatch))

    async def stored_count(self, stream: str) -> int:
        return await waiting(self.js, stream)

    async def stored_commands(self) -> list[Command]:
        state = (await self.js.stream_info(subjects.COMMANDS_STREAM)).state
        commands = []
        for sequence in range(state.first_seq, state.last_seq + 1):
            try:
                raw = await self.js.get_msg(subjects.COMMANDS_STREAM, sequence)
            except nats.js.errors.NotFoundError:
                continue
            assert raw.data is not None
            commands.append(codec.command_decoder.decode(raw.data))
        return commands


@pytest.fixture
async def cluster(nats_url: str) -> AsyncIterator[Cluster]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        subscription = await nc.subscribe(f"{subjects.COMMANDS_ROOT}.>")
        yield Cluster(nc, js, Commands(subscription))
    finally:
        await nc.close()


class Running:
    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.stopped = anyio.Event()

    async def run(self, service: ExecutorService, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            with self.scope:
                await service.run(task_status=task_status)
        finally:
            self.stopped.set()

    async def stop(self) -> None:
        """Cancel the service (as SIGTERM does in the CLI) and wait until it has wound down."""
        self.scope.cancel()
        with anyio.fail_after(DEADLINE):
            await self.stopped.wait()


@asynccontextmanager
async def running(service: ExecutorService) -> AsyncIterator[Running]:
    handle = Running()
    async with anyio.create_task_group() as tg:
        await tg.start(handle.run, service)
        try:
            yield handle
        finally:
            await handle.stop()


def executor(nats_url: str, name: str = "executor-1", **options: Any) -> ExecutorService:
    options.setdefault("concurrency", 2)
    return ExecutorService(nats_url, replica=name, **options)


async def test_a_quick_attempt_reports_only_its_outputs(nats_url: str, cluster: Cluster) -> None:
    dispatches = [
        dispatch_of(tasks.add, {"a": 2, "b": 40}),
        dispatch_of(tasks.divide, {"a": 7, "b": 2}),
        dispatch_of(tasks.describe, {"point": tasks.Point(3, 4), "payload": b"xyz"}),
    ]
    async with running(executor(nats_url, concurrency=4, started_after_seconds=DEADLINE)):  # all are "quick"
        for dispatch in dispatches:
            await cluster.dispatch(dispatch)
        reports = [await cluster.commands.of(dispatch, 1) for dispatch in dispatches]

    outputs = []
    for dispatch, (result,) in zip(dispatches, reports, strict=True):
        assert isinstance(result, ReportAttemptResult), "the scheduler records the start with the result"
        assert (result.attempt_id, result.worker) == (dispatch.attempt_id, "executor-1")
        assert (result.command_id, result.error) == (f"{dispatch.attempt_id}:result", None)
        outputs.append(result.outputs)
    assert outputs == [
        {"result": 42},
        {"quotient": 3, "remainder": 1},
        {"result": "3,4:xyz"},
    ]
    assert len(await cluster.stored_commands()) == 3
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0
    assert multiprocessing.active_children() == []


async def test_an_idle_executor_starts_a_lone_dispatch_at_once(nats_url: str, cluster: Cluster) -> None:
    async with running(executor(nats_url, concurrency=4)):
        dispatch = dispatch_of(tasks.add, {"a": 1, "b": 2})
        with anyio.fail_after(2.0):  # well under the pull request's expiry: nothing waits for a full batch
            await cluster.dispatch(dispatch)
            result = await cluster.commands.result_of(dispatch)
    assert result.outputs == {"result": 3}


async def test_a_raising_task_is_reported_as_a_user_error(nats_url: str, cluster: Cluster) -> None:
    dispatch = dispatch_of(tasks.fail, {"message": "no such customer"})
    async with running(executor(nats_url)):
        await cluster.dispatch(dispatch)
        result = await cluster.commands.result_of(dispatch)
    assert result.outputs is None
    assert result.error is not None
    assert (result.error.kind, result.error.error_type, result.error.message) == (
        "user",
        "ValueError",
        "no such customer",
    )
    assert "raise ValueError(message)" in result.error.traceback


async def test_a_dying_worker_is_a_system_error_and_the_next_attempt_still_runs(
    nats_url: str, cluster: Cluster
) -> None:
    dying, next_one = dispatch_of(tasks.die, {"code": 3}), dispatch_of(tasks.add, {"a": 1, "b": 1})
    async with running(executor(nats_url, concurrency=1)):
        await cluster.dispatch(dying)
        await cluster.dispatch(next_one)
        died = await cluster.commands.result_of(dying)
        ran = await cluster.commands.result_of(next_one)
    assert died.error is not None
    assert (died.error.kind, died.error.error_type) == ("system", "WorkerLost")
    assert "exit code 3" in died.error.message
    assert ran.outputs == {"result": 2}


async def test_a_timed_out_attempt_is_the_tasks_own_failure(nats_url: str, cluster: Cluster, tmp_path: Path) -> None:
    dispatch = dispatch_of(tasks.wait_for_file_briefly, {"path": str(tmp_path / "never")})
    async with running(executor(nats_url)):
        await cluster.dispatch(dispatch)
        result = await cluster.commands.result_of(dispatch)
    assert result.error is not None
    assert (result.error.kind, result.error.message) == ("user", "timed out after 0.5 s")


async def test_attempts_run_side_by_side_up_to_the_concurrency(nats_url: str, cluster: Cluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    first, second = (dispatch_of(tasks.wait_for_file, {"path": str(gate)}, node) for node in ("a", "b"))
    async with running(executor(nats_url, concurrency=2)):
        await cluster.dispatch(first)
        await cluster.dispatch(second)
        started = [*await cluster.commands.of(first, 1), *await cluster.commands.of(second, 1)]
        release(gate)
        results = [await cluster.commands.result_of(first), await cluster.commands.result_of(second)]
    assert {type(command) for command in started} == {ReportAttemptStarted}
    assert [result.outputs for result in results] == [{"result": "done"}, {"result": "done"}]


async def test_a_dispatch_delivered_twice_is_stored_as_one_result(nats_url: str, cluster: Cluster) -> None:
    twice, marker = dispatch_of(tasks.add, {"a": 1, "b": 2}), dispatch_of(tasks.add, {"a": 0, "b": 0})
    with structlog.testing.capture_logs() as logs:
        async with running(executor(nats_url, concurrency=1, started_after_seconds=DEADLINE)):
            for dispatch in (twice, twice, marker):
                await cluster.dispatch(dispatch)
            await cluster.commands.of(marker, 1)  # one slot, in order: both deliveries of `twice` are done

    runs = [entry for entry in logs if entry["event"] == "attempt_succeeded" and entry["attempt"] == twice.attempt_id]
    assert len(runs) == 2
    # Reported apart (the same command twice, the second a duplicate) or together (one command): stored once.
    stored = [command for command in await cluster.stored_commands() if command.execution_id == twice.execution_id]
    assert [type(command) for command in stored] == [ReportAttemptResult]
    assert stored[0].command_id == f"{twice.attempt_id}:result"
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0


async def test_a_dispatch_is_acked_only_once_its_result_is_stored(
    nats_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    dispatch = dispatch_of(tasks.wait_for_file, {"path": str(gate)})
    async with running(executor(nats_url)):
        await cluster.dispatch(dispatch)
        (started,) = await cluster.commands.of(dispatch, 1)
        assert started == ReportAttemptStarted(
            command_id=f"{dispatch.attempt_id}:started",
            execution_id=dispatch.execution_id,
            node=dispatch.node,
            attempt_id=dispatch.attempt_id,
            worker="executor-1",
        ), "an attempt still running after STARTED_AFTER_SECONDS reports started"
        assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 1
        release(gate)
        result = await cluster.commands.result_of(dispatch)
    assert result.outputs == {"result": "done"}
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0


async def test_a_stopping_executor_lets_its_running_attempt_finish(
    nats_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    dispatch = dispatch_of(tasks.wait_for_file, {"path": str(gate)})
    async with running(executor(nats_url, grace_seconds=DEADLINE)) as service:
        await cluster.dispatch(dispatch)
        await cluster.commands.of(dispatch, 1)
        service.scope.cancel()
        release(gate, "finished while stopping")
        result = await cluster.commands.result_of(dispatch)
        await service.stop()
    assert result.outputs == {"result": "finished while stopping"}
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0


async def test_an_attempt_cut_short_by_a_stop_is_run_by_another_executor(
    nats_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    dispatch = dispatch_of(tasks.wait_for_file, {"path": str(gate)})
    async with running(executor(nats_url, "executor-1", grace_seconds=0.1)) as first:
        await cluster.dispatch(dispatch)
        (started,) = await cluster.commands.of(dispatch, 1)
        assert isinstance(started, ReportAttemptStarted) and started.worker == "executor-1"
        await first.stop()
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 1

    async with running(executor(nats_url, "executor-2")):
        (restarted,) = await cluster.commands.of(dispatch, 1)
        assert isinstance(restarted, ReportAttemptStarted) and restarted.worker == "executor-2"
        release(gate)
        result = await cluster.commands.result_of(dispatch)
    assert (result.worker, result.outputs) == ("executor-2", {"result": "done"})
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0
    assert multiprocessing.active_children() == []


async def test_an_unreadable_dispatch_is_moved_to_the_dead_letters(nats_url: str, cluster: Cluster) -> None:
    dead_letters = await cluster.nc.subscribe(f"{subjects.DEAD_LETTER_ROOT}.>")
    readable = dispatch_of(tasks.add, {"a": 1, "b": 1})
    async with running(executor(nats_url)):
        await cluster.js.publish(subjects.dispatch_subject("local", "default"), b'{"type": "dispatch.v1"}')
        await cluster.dispatch(readable)
        dead = await dead_letters.next_msg(timeout=DEADLINE)
        assert (await cluster.commands.result_of(readable)).outputs == {"result": 2}
    assert dead.data == b'{"type": "dispatch.v1"}'
    assert dead.headers is not None and "missing required field" in dead.headers[PLAIT_ERROR]
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0


async def test_a_copy_naming_an_attempt_its_dispatch_does_not_carry_is_moved_to_the_dead_letters(
    nats_url: str, cluster: Cluster
) -> None:
    dead_letters = await cluster.nc.subscribe(f"{subjects.DEAD_LETTER_ROOT}.>")
    copied, readable = dispatch_of(tasks.add, {"a": 1, "b": 2}), dispatch_of(tasks.add, {"a": 1, "b": 1}, node="n1")
    await register_task(cluster.js, copied)
    async with running(executor(nats_url)):
        headers = {PLAIT_ATTEMPTS: "elsewhere/n0/1"}  # as a handed-on copy names its attempts (plait_executor.hand_on)
        await cluster.js.publish(subjects.dispatch_subject("local", "default"), codec.encode(copied), headers=headers)
        await cluster.dispatch(readable)
        dead = await dead_letters.next_msg(timeout=DEADLINE)
        assert (await cluster.commands.result_of(readable)).outputs == {"result": 2}
    assert dead.headers is not None and "names attempts its chunk does not carry" in dead.headers[PLAIT_ERROR]
    reported = [c for c in await cluster.stored_commands() if getattr(c, "attempt_id", "") == copied.attempt_id]
    assert reported == [], "the copied dispatch's attempt did not run"
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0


async def test_executors_of_other_queues_leave_a_dispatch_alone(nats_url: str, cluster: Cluster) -> None:
    gpu = dispatch_of(tasks.add, {"a": 1, "b": 1})
    async with running(executor(nats_url, queue="cpu")), running(executor(nats_url, "gpu-1", queue="gpu")):
        await cluster.dispatch(gpu, queue="gpu")
        result = await cluster.commands.result_of(gpu)
    assert result.worker == "gpu-1"
    consumers = {info.name for info in await cluster.js.consumers_info(subjects.DISPATCH_STREAM)}
    assert consumers == {"executor-local-cpu", "executor-local-gpu"}


async def test_a_stopped_executor_leaves_no_pull_request_to_swallow_a_dispatch(nats_url: str, cluster: Cluster) -> None:
    async with running(executor(nats_url, "executor-1")):
        pass  # its pull request was waiting on the server when it stopped
    dispatch = dispatch_of(tasks.add, {"a": 1, "b": 1})
    await cluster.dispatch(dispatch)
    async with running(executor(nats_url, "executor-2")):
        with anyio.fail_after(5.0):  # far less than the 30 s ack wait a swallowed dispatch would take
            result = await cluster.commands.result_of(dispatch)
    assert result.worker == "executor-2"


async def test_a_long_attempt_is_kept_in_progress_past_the_ack_wait(nats_url: str, cluster: Cluster) -> None:
    dispatch = dispatch_of(tasks.pause, {"seconds": 2.5})
    with structlog.testing.capture_logs() as logs:
        async with (
            running(executor(nats_url, "executor-1", ack_wait_seconds=1.0)),
            running(executor(nats_url, "executor-2", ack_wait_seconds=1.0)),
        ):
            await cluster.dispatch(dispatch)
            started, result = await cluster.commands.of(dispatch)  # a redelivery would publish `started` again
    assert isinstance(started, ReportAttemptStarted) and isinstance(result, ReportAttemptResult)
    assert (result.worker, result.outputs) == (started.worker, {"result": 2.5})
    assert [entry["delivery"] for entry in logs if entry["event"] == "attempt_started"] == [1]


async def held_by_executors(cluster: Cluster, count: int) -> None:
    """Wait until the executors hold ``count`` dispatches: delivered to them, not acknowledged yet."""
    with anyio.fail_after(DEADLINE):
        while True:
            info = await cluster.js.consumer_info(subjects.DISPATCH_STREAM, "executor-local-default")
            if info.num_ack_pending >= count:
                return
            await anyio.sleep(0.05)


async def test_an_executor_holds_more_dispatches_than_workers_and_runs_them_in_turn(
    nats_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = dispatch_of(tasks.wait_for_file, {"path": str(gate)}, "a")
    second, third = (dispatch_of(tasks.add, {"a": n, "b": 1}, node) for n, node in ((1, "b"), (2, "c")))
    async with running(executor(nats_url, concurrency=1, prefetch=3)):
        await cluster.dispatch(first)
        await cluster.commands.of(first, 1)
        await cluster.dispatch(second)
        await cluster.dispatch(third)
        await held_by_executors(cluster, 3)
        assert cluster.commands.unread[second.attempt_id] == [], "held, not started: the one worker is busy"
        release(gate)
        results = [await cluster.commands.result_of(d) for d in (first, second, third)]
    assert [result.outputs for result in results] == [{"result": "done"}, {"result": 2}, {"result": 3}]
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0


async def test_a_stopping_executor_hands_back_at_once_the_dispatches_no_worker_took(
    nats_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    running_one = dispatch_of(tasks.wait_for_file, {"path": str(gate)}, "a")
    held = dispatch_of(tasks.add, {"a": 1, "b": 1}, "b")
    async with running(executor(nats_url, "executor-1", concurrency=1, grace_seconds=DEADLINE)) as first:
        await cluster.dispatch(running_one)
        await cluster.commands.of(running_one, 1)
        await cluster.dispatch(held)
        await held_by_executors(cluster, 2)
        first.scope.cancel()  # stopping: the running attempt has its grace period, the held one goes back
        async with running(executor(nats_url, "executor-2")):
            with anyio.fail_after(10.0):  # far less than the 30 s ack wait
                result = await cluster.commands.result_of(held)
            assert result.worker == "executor-2"
            release(gate)
            finished = await cluster.commands.result_of(running_one)
    assert (finished.worker, finished.outputs) == ("executor-1", {"result": "done"})
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0


async def test_results_that_end_while_one_is_being_stored_go_out_together(cluster: Cluster) -> None:
    execution_id = new_execution_id()
    dispatches = [
        msgspec.structs.replace(
            dispatch_of(tasks.add, {"a": i, "b": 0}, node=f"n{i}"),
            execution_id=execution_id,
            attempt_id=attempt_id(execution_id, f"n{i}", 1),
        )
        for i in range(4)
    ]
    reporter = ResultReporter(cluster.js, "executor-1")
    async with anyio.create_task_group() as tg:
        for i, dispatch in enumerate(dispatches):  # the first one's report is in flight when the others end
            tg.start_soon(reporter.report, dispatch, AttemptOutcome(outputs={"result": i}), structlog.get_logger())

    stored = await cluster.stored_commands()
    assert [type(command) for command in stored] == [ReportAttemptResult, ReportAttemptResults]
    first, together = stored
    assert isinstance(first, ReportAttemptResult) and isinstance(together, ReportAttemptResults)
    assert [first.attempt_id, *(r.attempt_id for r in together.results)] == [d.attempt_id for d in dispatches]
    assert [r.outputs for r in together.results] == [{"result": 1}, {"result": 2}, {"result": 3}]
    assert reporter.commands == 2


def dispatches_of_one_execution(count: int) -> list[Dispatch]:
    execution_id = new_execution_id()
    return [
        msgspec.structs.replace(
            dispatch_of(tasks.add, {"a": i, "b": 0}, node=f"n{i}"),
            execution_id=execution_id,
            attempt_id=attempt_id(execution_id, f"n{i}", 1),
        )
        for i in range(count)
    ]


async def test_a_result_lingers_while_attempts_of_its_execution_wait_for_a_worker(cluster: Cluster) -> None:
    """Up to ``linger``, and no longer than until the last attempt held of that execution has ended."""
    dispatches = dispatches_of_one_execution(4)
    reporter = ResultReporter(cluster.js, "executor-1", linger=DEADLINE)
    for dispatch in dispatches:
        reporter.expect(dispatch)
    with anyio.fail_after(DEADLINE / 2):  # the last result ends the wait, not the linger
        async with anyio.create_task_group() as tg:
            for i, dispatch in enumerate(dispatches):  # one worker: each starts once the one before has ended
                reporter.started(dispatch)
                tg.start_soon(reporter.report, dispatch, AttemptOutcome(outputs={"result": i}), structlog.get_logger())
                await anyio.wait_all_tasks_blocked()

    (together,) = await cluster.stored_commands()
    assert isinstance(together, ReportAttemptResults), "one command, one write and one decision for all four"
    assert [r.attempt_id for r in together.results] == [d.attempt_id for d in dispatches]
    assert reporter.commands == 1


async def test_a_result_lingers_for_an_attempt_of_its_execution_that_has_just_started(cluster: Cluster) -> None:
    """Two quick tasks of one small execution, run side by side: one command, one decision for both."""
    first, second = dispatches_of_one_execution(2)
    reporter = ResultReporter(cluster.js, "executor-1", linger=DEADLINE, just_started=DEADLINE)
    for dispatch in (first, second):
        reporter.expect(dispatch)
        reporter.started(dispatch)
    with anyio.fail_after(DEADLINE / 2):  # the second result ends the wait, not the linger
        async with anyio.create_task_group() as tg:
            tg.start_soon(reporter.report, first, AttemptOutcome(outputs={"result": 1}), structlog.get_logger())
            await anyio.wait_all_tasks_blocked()
            assert await cluster.stored_count(subjects.COMMANDS_STREAM) == 0, "it waits for the one just started"
            await reporter.report(second, AttemptOutcome(outputs={"result": 2}), structlog.get_logger())
    (together,) = await cluster.stored_commands()
    assert isinstance(together, ReportAttemptResults)
    assert [r.attempt_id for r in together.results] == [first.attempt_id, second.attempt_id]


async def test_a_result_beside_attempts_that_have_run_a_while_does_not_linger(cluster: Cluster) -> None:
    first, second = dispatches_of_one_execution(2)
    reporter = ResultReporter(cluster.js, "executor-1", linger=DEADLINE, just_started=0.0)
    for dispatch in (first, second):
        reporter.expect(dispatch)
        reporter.started(dispatch)
    with anyio.fail_after(DEADLINE / 2):  # the second one runs on: nothing waits for it
        await reporter.report(first, AttemptOutcome(outputs={"result": 1}), structlog.get_logger())
    (alone,) = await cluster.stored_commands()
    assert isinstance(alone, ReportAttemptResult) and alone.attempt_id == first.attempt_id


async def test_a_lingering_result_goes_out_once_the_attempt_it_waited_for_is_handed_back(cluster: Cluster) -> None:
    first, second = dispatches_of_one_execution(2)
    reporter = ResultReporter(cluster.js, "executor-1", linger=DEADLINE)
    for dispatch in (first, second):
        reporter.expect(dispatch)
    reporter.started(first)
    with anyio.fail_after(DEADLINE / 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reporter.report, first, AttemptOutcome(outputs={"result": 1}), structlog.get_logger())
            await anyio.wait_all_tasks_blocked()
            assert await cluster.stored_count(subjects.COMMANDS_STREAM) == 0, "it waits while the second one waits"
            reporter.started(second)  # the executor is stopping: the second goes back to the server, unreported
            reporter.forgo(second)
    (alone,) = await cluster.stored_commands()
    assert isinstance(alone, ReportAttemptResult) and alone.attempt_id == first.attempt_id


async def test_a_dispatch_on_its_last_delivery_is_reported_as_a_system_failure(nats_url: str, cluster: Cluster) -> None:
    """Its executors were lost twice (here: took it and handed it back); the third may not run it again."""
    async with running(executor(nats_url, max_deliveries=3)):
        pass
    dispatch = dispatch_of(tasks.add, {"a": 1, "b": 1})
    await cluster.dispatch(dispatch)
    lost = await cluster.js.pull_subscribe_bind("executor-local-default", stream=subjects.DISPATCH_STREAM)
    for _ in range(2):
        [msg] = await lost.fetch(1, timeout=DEADLINE)
        await msg.nak()
    async with running(executor(nats_url, "executor-2", max_deliveries=3)):
        result = await cluster.commands.result_of(dispatch)
    assert result.error is not None and result.outputs is None
    assert (result.error.kind, result.error.message) == ("system", "delivered 3 times; the executor was lost each time")
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0


async def test_a_dispatch_consumer_of_an_older_release_gets_the_short_ack_wait_and_a_delivery_limit(
    nats_url: str, cluster: Cluster
) -> None:
    older = ConsumerConfig(
        durable_name="executor-local-default", filter_subject=subjects.dispatch_subject("local", "default")
    )
    await cluster.js.add_consumer(subjects.DISPATCH_STREAM, older, ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0)
    async with running(executor(nats_url)):
        info = await cluster.js.consumer_info(subjects.DISPATCH_STREAM, "executor-local-default")
    assert (info.config.ack_wait, info.config.max_deliver) == (ACK_WAIT_SECONDS, MAX_DELIVERIES)


def chunk_of(task: Task[..., Any], inputs: list[dict[str, Any]]) -> tuple[DispatchChunk, list[Dispatch]]:
    """A chunk of attempts of one execution, as a decision that queued them all is dispatched, and their dispatches."""
    execution_id = new_execution_id()
    nodes = [f"n{i}" for i in range(len(inputs))]
    chunk = DispatchChunk(
        execution_id=execution_id,
        project=PROJECT,
        domain=DOMAIN,
        decision_sequence=1,
        tasks={"t": task.spec},
        attempts=[
            ChunkedAttempt(
                node=node,
                attempt_id=attempt_id(execution_id, node, 1),
                attempt=1,
                task="t",
                inputs={name: encode_value(value) for name, value in values.items()},
            )
            for node, values in zip(nodes, inputs, strict=True)
        ],
    )
    return chunk, chunk.dispatches()


async def test_the_attempts_of_a_chunk_run_side_by_side_and_its_message_is_acked_once_all_are_stored(
    nats_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    chunk, dispatches = chunk_of(tasks.wait_for_file, [{"path": str(gate)}] * 3)
    await register_task(cluster.js, dispatches[0])
    async with running(executor(nats_url, concurrency=3)):
        await cluster.js.publish(subjects.dispatch_subject("local", "default"), codec.encode(chunk))
        started = [(await cluster.commands.of(dispatch, 1))[0] for dispatch in dispatches]
        assert {type(command) for command in started} == {ReportAttemptStarted}, "all three run at once"
        info = await cluster.js.consumer_info(subjects.DISPATCH_STREAM, "executor-local-default")
        assert (info.num_ack_pending, await cluster.stored_count(subjects.DISPATCH_STREAM)) == (1, 1)
        release(gate)
        results = [await cluster.commands.result_of(dispatch) for dispatch in dispatches]
    assert [result.outputs for result in results] == [{"result": "done"}] * 3
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0
    info = await cluster.js.consumer_info(subjects.DISPATCH_STREAM, "executor-local-default")
    assert (info.delivered.stream_seq, info.num_redelivered) == (1, 0)


async def test_a_dispatch_message_as_older_releases_wrote_it_still_runs(nats_url: str, cluster: Cluster) -> None:
    """A stream may hold ``dispatch.v1`` messages of one attempt each, published before chunks, across an upgrade."""
    dispatch = dispatch_of(tasks.add, {"a": 20, "b": 22})
    await register_task(cluster.js, dispatch)
    written_before = msgspec.json.encode({**msgspec.to_builtins(dispatch), "type": "dispatch.v1"})
    async with running(executor(nats_url)):
        await cluster.js.publish(subjects.dispatch_subject("local", "default"), written_before)
        result = await cluster.commands.result_of(dispatch)
    assert result.outputs == {"result": 42}
    assert await cluster.stored_count(subjects.DISPATCH_STREAM) == 0
