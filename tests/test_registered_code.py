"""The executor runs only registered code, and never reuses a worker process across projects: a dispatch published
by hand (forged) naming an unregistered task, or a registered task with another file, is refused before any of its
code is imported; one project's task changing module state does not change another project's next result."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from plait import codec
from plait.adapters.code_store import upload_bundle
from plait.adapters.streams import ensure_streams
from plait.core.commands import ReportAttemptResult, ReportAttemptResults
from plait.core.dispatch import Dispatch
from plait.core.model import TaskSpec, TaskTarget
from plait.protocol import subjects
from plait.sdk.hints import decode_value
from plait.sdk.loader import load_module
from plait_executor import ExecutorService
from plait_executor.registered import TASK_NOT_REGISTERED
from tests import executor_tasks
from tests.helpers.dispatches import first_attempt
from tests.helpers.registered_tasks import register_task
from tests.helpers.running import running

DEADLINE = 20.0


class Dispatcher:
    """Publishes dispatches by hand, as anyone who can write to the dispatch stream could, and reads results."""

    def __init__(self, js: JetStreamContext, commands: Subscription) -> None:
        self.js, self.commands = js, commands
        self.results: dict[str, ReportAttemptResult] = {}

    async def publish(self, dispatch: Dispatch) -> None:
        await self.js.publish(subjects.dispatch_subject("local", "default"), codec.encode(dispatch))

    async def result_of(self, dispatch: Dispatch) -> ReportAttemptResult:
        while dispatch.attempt_id not in self.results:
            command = codec.command_decoder.decode((await self.commands.next_msg(timeout=DEADLINE)).data)
            for report in command.results if isinstance(command, ReportAttemptResults) else (command,):
                if isinstance(report, ReportAttemptResult):
                    self.results[report.attempt_id] = report
        return self.results[dispatch.attempt_id]


@pytest.fixture
async def dispatcher(nats_url: str) -> AsyncIterator[Dispatcher]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        commands = await nc.subscribe(f"{subjects.COMMANDS_ROOT}.>")
        async with running(ExecutorService(nats_url, concurrency=1, replica="isolation-executor").run):
            yield Dispatcher(js, commands)
    finally:
        await nc.close()


def dispatch(task: TaskSpec, inputs: dict[str, Any], project: str = "proj") -> Dispatch:
    return first_attempt(task, inputs, project=project, domain="dev")


def hostile_module(tmp_path: Path) -> tuple[Path, Path, str]:
    """A file that, once imported, writes a marker: (the file, the marker, its module name)."""
    marker = tmp_path / "imported.marker"
    module = f"hostile_{uuid.uuid4().hex[:12]}"
    path = tmp_path / f"{module}.py"
    path.write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n\n"
        "from plait import task\n\n\n@task\ndef add(a: int, b: int) -> int:\n    return a + b\n"
    )
    return path, marker, module


async def test_a_forged_dispatch_of_an_unregistered_file_is_refused_and_never_imported(
    dispatcher: Dispatcher, tmp_path: Path
) -> None:
    path, marker, module = hostile_module(tmp_path)
    spec = TaskSpec(
        name=f"{module}.add",
        version="0" * 32,
        interface=executor_tasks.add.spec.interface,
        target=TaskTarget(module=module, qualname="add", file=str(path)),
    )
    forged = dispatch(spec, {"a": 1, "b": 2})
    await dispatcher.publish(forged)
    result = await dispatcher.result_of(forged)
    assert result.error is not None and result.error.kind == "system"
    assert result.error.error_type == TASK_NOT_REGISTERED
    assert f"task '{module}.add' version {'0' * 32} in proj/dev is not registered" in result.error.message
    assert not marker.exists(), "the forged file was imported"


async def test_a_registered_task_named_with_another_file_is_refused_and_that_file_never_imported(
    dispatcher: Dispatcher, tmp_path: Path
) -> None:
    path, marker, module = hostile_module(tmp_path)
    registered = executor_tasks.add.spec
    honest = dispatch(registered, {"a": 2, "b": 3})
    await register_task(dispatcher.js, honest)
    await dispatcher.publish(honest)
    assert (await dispatcher.result_of(honest)).outputs == {"result": 5}, "the registered task runs"

    forged_target = TaskTarget(module=module, qualname="add", file=str(path))
    forged = dispatch(TaskSpec(**{**_fields(registered), "target": forged_target}), {"a": 2, "b": 3})
    await dispatcher.publish(forged)
    result = await dispatcher.result_of(forged)
    assert result.error is not None and result.error.error_type == TASK_NOT_REGISTERED
    assert f"the dispatch names {module}:add ({path})" in result.error.message
    assert not marker.exists(), "the forged file was imported"


def _fields(spec: TaskSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in spec.__struct_fields__}


async def test_module_state_one_project_changes_does_not_reach_another_projects_next_run(
    dispatcher: Dispatcher, tmp_path: Path
) -> None:
    module = f"stateful_{uuid.uuid4().hex[:12]}"
    path = tmp_path / f"{module}.py"
    path.write_text(
        "from plait import task\n\nSTATE = [600]\n\n\n@task\n"
        "def swap(value: int) -> int:\n    old = STATE[0]\n    if value:\n        STATE[0] = value\n    return old\n"
    )
    spec = load_module(module, str(path)).swap.spec

    async def run(project: str, value: int) -> int:
        attempt = dispatch(spec, {"value": value}, project)
        await register_task(dispatcher.js, attempt)
        await dispatcher.publish(attempt)
        result = await dispatcher.result_of(attempt)
        assert result.error is None, result.error
        assert result.outputs is not None
        return int(decode_value(result.outputs["result"], int))

    assert await run("tenant-a", 666) == 600, "tenant A sets the module's state to 666"
    assert await run("tenant-a", 0) == 666, "tenant A's next attempt shares its warm worker (and its state)"
    assert await run("tenant-b", 0) == 600, "tenant B's attempt does not see tenant A's module state"
    assert await run("tenant-a", 0) == 600, "tenant A's worker was replaced: no process serves two projects"


def hostile_bundle(marker: Path) -> bytes:
    """A bundle whose ``tests/executor_tasks.py`` (a registered task's module) writes ``marker`` when imported."""
    source = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("0/tests/__init__.py", b""), ("0/tests/executor_tasks.py", source)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def test_a_registered_task_with_a_bundle_no_registered_workflow_has_is_refused_and_never_imported(
    dispatcher: Dispatcher, tmp_path: Path
) -> None:
    marker = tmp_path / "imported.marker"
    data = hostile_bundle(marker)
    bundle = hashlib.sha256(data).hexdigest()
    await upload_bundle(dispatcher.js, bundle, data)
    registered = executor_tasks.add.spec
    nameless = msgspec.structs.replace(dispatch(registered, {"a": 1, "b": 2}), code_bundle=bundle)
    await register_task(dispatcher.js, nameless)
    pretending = msgspec.structs.replace(nameless, attempt_id=f"{nameless.attempt_id}x", workflow=("etl", "0" * 32))
    for forged in (nameless, pretending):
        await dispatcher.publish(forged)
    nameless_result, pretending_result = [await dispatcher.result_of(forged) for forged in (nameless, pretending)]
    assert nameless_result.error is not None and nameless_result.error.error_type == TASK_NOT_REGISTERED
    assert f"code bundle {bundle}: the dispatch names no workflow registered with it" in nameless_result.error.message
    assert pretending_result.error is not None and pretending_result.error.error_type == TASK_NOT_REGISTERED
    assert f"workflow 'etl' version {'0' * 32} in proj/dev is not registered" in pretending_result.error.message
    assert not marker.exists(), "the forged bundle's module was imported"
