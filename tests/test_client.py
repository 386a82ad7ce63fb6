"""The public client: ``AsyncClient`` and its blocking twin ``Client``, their execution handles, typed results and
errors."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio.to_thread
import msgspec
import pytest

from plait import ExecutionError, InputError, NotFound, PlaitError, Timeout, Unavailable
from plait.client import (
    AsyncClient,
    AsyncExecutionHandle,
    Client,
    ExecutionHandle,
    ExecutionOutcome,
    ExecutionSummary,
    TaskError,
)
from plait.client.catalog import CatalogClient
from plait.client.outcome import result_of
from plait.core.events import ExecutionLaunched, ExecutionSucceeded
from plait.protocol import subjects
from plait.protocol.executions import ShowExecution
from plait.protocol.queries import error_reply
from tests import workflows
from tests.helpers.stack import services_and_client


@pytest.fixture
async def services(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as client:
        yield client


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }


def blocking_form(signature: inspect.Signature) -> str:
    """A signature as its blocking twin would spell it: ``Async`` names and awaitables become the plain ones."""
    text = str(signature)
    for asynchronous, blocking in (
        ("AsyncIterator", "Iterator"),
        ("AsyncExecutionHandle", "ExecutionHandle"),
        ("AsyncClient", "Client"),
    ):
        text = text.replace(asynchronous, blocking)
    return text


@pytest.mark.parametrize(("asynchronous", "blocking"), [(AsyncClient, Client), (AsyncExecutionHandle, ExecutionHandle)])
def test_the_blocking_twins_have_the_async_ones_methods_and_signatures(asynchronous: type, blocking: type) -> None:
    async_methods, blocking_methods = public_methods(asynchronous), public_methods(blocking)
    assert set(async_methods) == set(blocking_methods)
    for name, signature in async_methods.items():
        assert blocking_form(signature) == str(blocking_methods[name]), name
        assert (
            inspect.iscoroutinefunction(getattr(asynchronous, name))
            or inspect.isasyncgenfunction(getattr(asynchronous, name))
            or name in {"handle", "events"}
        ), f"{name} of {asynchronous.__name__} is not async"


def outcome(status: str, outputs: dict[str, object] | None = None, **fields: object) -> ExecutionOutcome:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    defaults: dict[str, object] = {"error": None, "failed_node": None, "abort_reason": None}
    return ExecutionOutcome(
        execution_id="e1",
        project="default",
        domain="development",
        workflow="w",
        version="v",
        status=status,  # type: ignore[arg-type]
        inputs={},
        outputs=outputs,
        launched_at=at,
        finished_at=at,
        last_sequence=3,
        **{**defaults, **fields},  # type: ignore[arg-type]
    )


class TestResults:
    def test_a_result_is_decoded_to_the_workflows_return_type(self) -> None:
        """A Struct, a NamedTuple and a plain value come back as the types the workflow declares."""
        assert result_of(outcome("succeeded", {"result": {"x": 2, "y": 3}}), workflows.moved) == workflows.Point(2, 3)
        stats = result_of(outcome("succeeded", {"total": 30, "count": 4}), workflows.sum_of_squares)
        assert stats == workflows.Stats(total=30, count=4) and isinstance(stats, workflows.Stats)
        assert result_of(outcome("succeeded", {"result": 42}), workflows.add_two) == 42

    def test_without_the_workflow_a_result_is_the_outputs_by_name(self) -> None:
        assert result_of(outcome("succeeded", {"total": 30, "count": 4}), None) == {"total": 30, "count": 4}

    def test_a_failed_or_aborted_execution_has_no_result_but_an_execution_error(self) -> None:
        error = TaskError(kind="user", message="kaput", error_type="ValueError")
        with pytest.raises(ExecutionError, match="failed at node 'boom': ValueError: kaput") as failed:
            result_of(outcome("failed", error=error, failed_node="boom"), workflows.failing)
        assert (failed.value.status, failed.value.failed_node, failed.value.execution_id) == ("failed", "boom", "e1")
        with pytest.raises(ExecutionError, match="was aborted: no longer needed") as aborted:
            result_of(outcome("aborted", abort_reason="no longer needed"), workflows.paused)
        assert aborted.value.reason == "no longer needed"

    def test_outputs_that_do_not_fit_the_return_type_raise_a_plait_error(self) -> None:
        with pytest.raises(PlaitError, match=r"do not fit what tests\.workflows\.add_two returns"):
            result_of(outcome("succeeded", {"result": "forty-two"}), workflows.add_two)

    def test_an_outcome_is_immutable(self) -> None:
        with pytest.raises(AttributeError):
            outcome("succeeded", {"result": 1}).status = "failed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kind", "error"), [("not_found", NotFound), ("timeout", Timeout), ("bad_request", InputError)]
)
async def test_a_catalog_error_reply_is_raised_as_its_plait_error(
    nats_url: str, kind: str, error: type[PlaitError]
) -> None:
    async with await AsyncClient.connect(nats_url) as client:

        async def answer(msg: object) -> None:
            await msg.respond(msgspec.json.encode(error_reply(kind, f"it went {kind}")))  # type: ignore[attr-defined]

        await client.nc.subscribe(subjects.catalog_subject(client.project, client.domain, "tests.errors"), cb=answer)
        request = ShowExecution(project="p", domain="d", execution_id="e")
        with pytest.raises(error, match=f"it went {kind}"):
            await CatalogClient._ask(client, "tests.errors", request, ExecutionSummary)


async def test_bad_names_and_inputs_raise_input_errors_before_anything_is_sent(nats_url: str) -> None:
    with pytest.raises(InputError, match="project 'a b'"):
        await AsyncClient.connect(nats_url, project="a b")
    async with await AsyncClient.connect(nats_url) as client:
        with pytest.raises(InputError, match="execution id 'x y'"):
            client.handle("x y")
        with pytest.raises(InputError, match="cannot be encoded"):
            await client.launch(workflows.add_two, {"a": object(), "b": 1})


async def test_the_async_handle_waits_takes_the_result_follows_and_aborts(services: AsyncClient) -> None:
    client = services
    launched = await client.launch(workflows.sum_of_squares, {"n": 3})
    assert await launched.result(timeout=60) == workflows.Stats(total=0 + 1 + 4 + 9, count=4)
    ended = await client.handle(launched.id).wait(timeout=60)
    assert (ended.status, ended.outputs, ended.workflow) == (
        "succeeded",
        {"total": 14, "count": 4},
        "tests.workflows.sum_of_squares",
    )
    events = [type(e) for stored in [s async for s in launched.events()] for e in stored.decision.events]
    assert events[0] is ExecutionLaunched and events[-1] is ExecutionSucceeded

    failing = await client.launch(workflows.failing, {"message": "kaput"})
    with pytest.raises(ExecutionError, match="kaput") as failed:
        await failing.result(timeout=60)
    assert failed.value.failed_node is not None

    paused = await client.launch(workflows.paused, {"seconds": 600.0})
    await paused.abort("no longer needed")
    with pytest.raises(ExecutionError, match="aborted: no longer needed"):
        await client.handle(paused.id, workflows.paused).result(timeout=60)


def use_blocking_client(nats_url: str) -> dict[str, object]:
    """What a script does with the blocking client; runs in a thread, beside the services' event loop."""
    seen: dict[str, object] = {}
    with Client(nats_url) as client:
        handle = client.launch(workflows.add_two, {"a": 20, "b": 22})
        seen["result"] = handle.result(timeout=60)
        seen["final"] = client.wait(handle.id, timeout=60)
        seen["events"] = [type(e) for stored in handle.events() for e in stored.decision.events]
        seen["latest"] = client.latest_version(workflows.add_two.name)
        try:
            client.launch(workflows.add_two, {"a": "x", "b": 1})
        except InputError as exc:
            seen["rejected"] = str(exc)
        long_one = client.launch(workflows.paused, {"seconds": 600.0})
        first = next(iter(long_one.events()))  # live: the execution has not ended
        seen["first"] = [type(e) for e in first.decision.events]
        long_one.abort("no longer needed")
        seen["aborted"] = client.handle(long_one.id).wait(timeout=60)
        seen["listed"] = client.list_executions(limit=10)
        seen["shown"] = client.show_execution(handle.id)
        seen["id"] = handle.id
    try:
        client.wait(handle.id)
    except Unavailable as exc:
        seen["closed"] = str(exc)
    return seen


async def test_the_blocking_client_launches_follows_aborts_and_lists(services: AsyncClient, nats_url: str) -> None:
    seen = await anyio.to_thread.run_sync(use_blocking_client, nats_url)
    assert seen["result"] == 42
    final = seen["final"]
    assert isinstance(final, ExecutionOutcome) and final.status == "succeeded" and final.outputs == {"result": 42}
    events = seen["events"]
    assert events[0] is ExecutionLaunched and events[-1] is ExecutionSucceeded  # type: ignore[index]
    assert seen["first"][0] is ExecutionLaunched  # type: ignore[index]
    assert seen["latest"] == workflows.add_two.spec.version
    assert "input 'a' expects int" in str(seen["rejected"])
    aborted = seen["aborted"]
    assert isinstance(aborted, ExecutionOutcome)
    assert (aborted.status, aborted.abort_reason) == ("aborted", "no longer needed")
    listed = seen["listed"]
    assert isinstance(listed, list) and all(isinstance(row, ExecutionSummary) for row in listed)
    assert seen["id"] in [row.execution_id for row in listed]
    assert seen["shown"].outputs == {"result": 42}  # type: ignore[attr-defined]
    assert seen["closed"] == "the client is closed"


async def test_what_the_services_refuse_is_raised_as_plait_errors(services: AsyncClient) -> None:
    client = services
    with pytest.raises(NotFound, match=r"'no\.such\.workflow' is not registered"):
        await client.launch("no.such.workflow", {}, version="latest")
    with pytest.raises(NotFound):
        await client.show_execution("never-launched")
    with pytest.raises(InputError, match="direction"):
        await client.lineage("x", "sideways")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="kind"):
        await client.entities("gadget")  # type: ignore[arg-type]
    with pytest.raises(Timeout, match="did not end within"):
        await client.handle("never-launched").wait(timeout=0.1)


async def test_an_error_inside_a_launchs_task_group_is_raised_as_itself_not_as_an_exception_group(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await AsyncClient.connect(nats_url) as client:

        async def store_launch(*args: object) -> None:
            raise Unavailable("the stream is gone")

        monkeypatch.setattr(client, "_store_launch", store_launch)
        with pytest.raises(Unavailable, match="the stream is gone"):
            await client.launch(workflows.add_two, {"a": 1, "b": 2})


async def test_a_record_this_client_cannot_read_raises_a_plait_error(nats_url: str) -> None:
    """A malformed record, or one of an event version newer than this client knows, is not a ValueError."""
    async with await AsyncClient.connect(nats_url) as client:
        await client.js.publish(
            subjects.execution_subject(client.project, client.domain, "from-the-future"), b'{"type": "decision.v9"}'
        )
        with pytest.raises(PlaitError, match="cannot be read by this client"):
            await client.wait("from-the-future", timeout=10)
        with pytest.raises(PlaitError, match="cannot be read by this client"):
            [stored async for stored in client.events("from-the-future")]


LEFT_OPEN = """
import sys
from plait import Client

client = Client(sys.argv[1])
client.execution_ids()
following = client.events("never-launched", until_terminal=False)
print("left open", flush=True)
"""


def test_a_blocking_client_left_open_lets_the_interpreter_exit(nats_url: str) -> None:
    exited = subprocess.run(
        [sys.executable, "-c", LEFT_OPEN, nats_url], capture_output=True, text=True, timeout=60, check=False
    )
    assert (exited.returncode, exited.stdout.strip()) == (0, "left open"), exited.stderr
