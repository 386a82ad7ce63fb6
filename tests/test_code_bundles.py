"""Fast registration on the real stack: a workflow registered with its source bundle runs that source, however its
files change afterwards (or disappear); a hostile bundle is refused with a clear error."""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest
from nats.js import JetStreamContext

from plait.adapters.code_store import upload_bundle
from plait.adapters.connection import connect
from plait.client import AsyncClient
from plait.core.bundles import bundled_spec
from plait.core.events import TaskRegistered, WorkflowRegistered
from plait.core.model import TaskTarget
from plait.sdk.bundles import pack
from plait.sdk.loader import load_module
from plait_executor import WorkerPool
from plait_executor.code_bundles import CODE_BUNDLE_UNUSABLE, CodeCache
from plait_executor.code_roots import bundle_paths
from tests.helpers.code_bundle_sources import write_flow
from tests.helpers.plait_command import plait_command_async
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 60.0


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


def module_name() -> str:
    return f"bundled_{uuid.uuid4().hex[:12]}"


async def test_an_old_version_relaunched_after_its_file_changed_runs_its_own_code(
    client: AsyncClient, tmp_path: Path
) -> None:
    module = module_name()
    first = write_flow(tmp_path / "project", module, factor=10)
    one = await client.launch(first, {"x": 2}, fast=True)
    state = await final_state(client, one.id, DEADLINE)
    v1 = state.workflow.version
    assert state.outputs == {"result": "20"} and state.workflow.code_bundle != msgspec.UNSET

    second = write_flow(tmp_path / "project", module, factor=100)
    two = await client.launch(second, {"x": 2}, fast=True)
    state = await final_state(client, two.id, DEADLINE)
    v2 = state.workflow.version
    assert state.outputs == {"result": "200"}
    assert v1 != v2

    by_version = await client.launch(first.name, {"x": 3}, version=v1)
    assert (await final_state(client, by_version.id, DEADLINE)).outputs == {"result": "30"}, "version 1's code"
    relaunched = await client.relaunch(one.id)
    assert (await final_state(client, relaunched.id, DEADLINE)).outputs == {"result": "20"}
    latest = await client.launch(first.name, {"x": 3}, version=v2)
    assert (await final_state(client, latest.id, DEADLINE)).outputs == {"result": "300"}


async def test_without_a_bundle_the_old_version_cannot_run_once_its_file_changed(
    client: AsyncClient, tmp_path: Path
) -> None:
    module = module_name()
    first = write_flow(tmp_path / "project", module, factor=10, system_retries=0)
    v1 = await client.register(first)
    write_flow(tmp_path / "project", module, factor=100, system_retries=0)
    state = await final_state(client, (await client.launch(first.name, {"x": 2}, version=v1)).id, DEADLINE)
    assert state.status == "failed"
    assert "CodeVersionMismatch" in {a.error.error_type for n in state.nodes.values() for a in n.attempts if a.error}


async def test_a_helper_module_edit_makes_a_new_workflow_version_with_the_same_task_version(
    client: AsyncClient, tmp_path: Path
) -> None:
    module = module_name()
    first = write_flow(tmp_path / "project", module, factor=10, suffix="!")
    v1 = await client.register(first, fast=True)
    second = write_flow(tmp_path / "project", module, factor=10, suffix="?")
    v2 = await client.register(second, fast=True)
    assert v1 != v2, "the bundle differs: another workflow version"
    assert [t.version for t in first.spec.tasks.values()] == [t.version for t in second.spec.tasks.values()]
    assert v2 == await client.register(second, fast=True), "the same source: the same version"
    for version, expected in ((v1, "20!"), (v2, "20?")):
        state = await final_state(client, (await client.launch(first.name, {"x": 2}, version=version)).id, DEADLINE)
        assert state.outputs == {"result": expected}


async def test_a_task_runs_from_its_bundle_after_its_source_files_are_deleted(
    client: AsyncClient, tmp_path: Path
) -> None:
    folder = tmp_path / "gone"
    flow = write_flow(folder, module_name(), factor=7)
    version = await client.register(flow, fast=True)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    state = await final_state(client, (await client.launch(flow.name, {"x": 3}, version=version)).id, DEADLINE)
    assert state.outputs == {"result": "21"}


FAILING = """
from plait import task, workflow


@task(retries=0, system_retries=0)
def refuse(x: int) -> int:
    raise ValueError(f"no {x}")


@workflow
def flow(x: int) -> int:
    return refuse(x=x)
"""


async def test_a_tasks_traceback_names_its_file_as_in_the_project_not_in_the_executors_cache(
    client: AsyncClient, tmp_path: Path
) -> None:
    module = module_name()
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / f"{module}.py").write_text(FAILING)
    flow = load_module(module, str(tmp_path / "project" / f"{module}.py")).flow
    state = await final_state(client, (await client.launch(flow, {"x": 4}, fast=True)).id, DEADLINE)
    assert state.status == "failed"
    [error] = [attempt.error for attempt in state.nodes["refuse"].attempts if attempt.error]
    assert f'File "{module}.py", line 7, in refuse' in error.traceback, error.traceback
    assert "plait-code" not in error.traceback and str(tmp_path) not in error.traceback


def hostile_archive(member: tarfile.TarInfo, data: bytes = b"x = 1\n") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


async def test_a_bundle_escaping_its_root_is_refused_and_writes_nothing(client: AsyncClient, tmp_path: Path) -> None:
    flow = write_flow(tmp_path / "project", module_name(), factor=1, system_retries=0)
    archive = hostile_archive(tarfile.TarInfo(f"0/../../escaped-{uuid.uuid4().hex}.py"))
    bundle_hash = hashlib.sha256(archive).hexdigest()
    await upload_bundle(client.js, bundle_hash, archive)
    spec = bundled_spec(flow.spec, bundle_hash)
    for task in spec.tasks.values():
        await client._registry.register(TaskRegistered(client.project, client.domain, task))
    await client._registry.register(WorkflowRegistered(client.project, client.domain, spec))

    state = await final_state(client, (await client.launch(flow.name, {"x": 1}, version=spec.version)).id, DEADLINE)
    [attempt] = [a for node in state.nodes.values() for a in node.all_attempts()]
    assert state.status == "failed" and attempt.error is not None
    assert (attempt.error.kind, attempt.error.error_type) == ("system", CODE_BUNDLE_UNUSABLE)
    assert "is outside the bundle's source roots" in attempt.error.message
    assert escaped_files(tmp_path, Path(tempfile.gettempdir())) == []


def escaped_files(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("escaped-*")]


async def test_a_bundle_missing_from_the_bucket_fails_the_attempt_naming_it(
    client: AsyncClient, tmp_path: Path
) -> None:
    flow = write_flow(tmp_path / "project", module_name(), factor=1, system_retries=0)
    spec = bundled_spec(flow.spec, "ab" * 32)
    for task in spec.tasks.values():
        await client._registry.register(TaskRegistered(client.project, client.domain, task))
    await client._registry.register(WorkflowRegistered(client.project, client.domain, spec))
    state = await final_state(client, (await client.launch(flow.name, {"x": 1}, version=spec.version)).id, DEADLINE)
    [attempt] = [a for node in state.nodes.values() for a in node.all_attempts()]
    assert attempt.error is not None and attempt.error.error_type == CODE_BUNDLE_UNUSABLE
    assert f"code bundle {'ab' * 32} is not in the code bucket PLAIT_CODE" in attempt.error.message


async def test_plait_run_bundles_by_default_so_a_relaunch_runs_the_old_source(
    client: AsyncClient, tmp_path: Path, nats_url: str, database_url: str
) -> None:
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_DATABASE_URL": database_url, "PLAIT_HOME": str(tmp_path / "home")}
    module = module_name()
    write_flow(tmp_path / "project", module, factor=10)
    reference = f"{tmp_path / 'project' / module}.py:flow"
    first = await plait_command_async(["run", "--detach", reference, "--x", "2"], env)
    assert first.returncode == 0, first.stderr
    one = first.stdout.strip()
    assert (await final_state(client, one, DEADLINE)).outputs == {"result": "20"}

    write_flow(tmp_path / "project", module, factor=100)
    second = await plait_command_async(["run", "--detach", reference, "--x", "2"], env)
    assert (await final_state(client, second.stdout.strip(), DEADLINE)).outputs == {"result": "200"}
    relaunched = await plait_command_async(["executions", "relaunch", one], env)
    assert relaunched.returncode == 0, relaunched.stderr
    assert (await final_state(client, relaunched.stdout.strip(), DEADLINE)).outputs == {"result": "20"}

    registered = await plait_command_async(["register", reference, "--fast"], env)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip() == (await final_state(client, second.stdout.strip())).workflow.version
    unbundled = await plait_command_async(["register", reference], env)
    assert unbundled.stdout.strip() != registered.stdout.strip()


def unpacked_bundle(folder: Path, module: str, factor: int) -> tuple[str, TaskTarget, str]:
    """An unpacked bundle of ``module`` (as an executor's cache holds it), the task's target and version."""
    flow = write_flow(folder / "0", module, factor=factor)
    spec = next(iter(flow.spec.tasks.values()))
    return str(folder), spec.target, spec.version


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await connect(nats_url, "test-code-cache")
    yield nc.jetstream()
    await nc.close()


async def uploaded_bundle(js: JetStreamContext, folder: Path) -> str:
    bundle = pack(write_flow(folder, module_name(), factor=1))
    await upload_bundle(js, bundle.hash, bundle.data)
    return bundle.hash


async def test_the_code_cache_keeps_the_bundles_used_last_and_removes_the_others(
    js: JetStreamContext, tmp_path: Path
) -> None:
    a, b, c = [await uploaded_bundle(js, tmp_path / name) for name in "abc"]
    cache = CodeCache(js, tmp_path / "cache", max_bundles=2)
    with anyio.fail_after(DEADLINE):
        roots = await cache.root(a), await cache.root(b), await cache.root(a)
        assert roots[0] == roots[2] == tmp_path / "cache" / a and bundle_paths(str(roots[1])), "unpacked once each"
        await cache.root(c)
        assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == sorted([a, c]), "b was used least"
        assert bundle_paths(str(await cache.root(b))), "unpacked again"
        assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == sorted([b, c])


async def test_a_cached_bundle_removed_from_the_disk_is_unpacked_again(js: JetStreamContext, tmp_path: Path) -> None:
    bundle_hash = await uploaded_bundle(js, tmp_path / "src")
    cache = CodeCache(js, tmp_path / "cache")
    with anyio.fail_after(DEADLINE):
        many = await asyncio.gather(*(cache.root(bundle_hash) for _ in range(8)))
        assert len(set(many)) == 1 and bundle_paths(str(many[0]))
        shutil.rmtree(many[0])
        assert bundle_paths(str(await cache.root(bundle_hash))) == [str(many[0] / "0")]


async def test_a_warm_worker_never_mixes_two_bundles_of_one_module(tmp_path: Path) -> None:
    module = module_name()
    root_a, target, version_a = unpacked_bundle(tmp_path / "a", module, factor=10)
    root_b, _, version_b = unpacked_bundle(tmp_path / "b", module, factor=100)
    async with WorkerPool(1) as pool:
        with anyio.fail_after(DEADLINE):
            first = await pool.run(target, {"x": 1}, version=version_a, code_root=root_a)
            (warm,) = pool.worker_pids
            again = await pool.run(target, {"x": 2}, version=version_a, code_root=root_a)
            assert pool.worker_pids == [warm], "the same bundle: the same warm worker"
            other = await pool.run(target, {"x": 1}, version=version_b, code_root=root_b)
            assert pool.worker_pids != [warm], "another bundle of the module: a fresh worker"
            back = await pool.run(target, {"x": 1}, version=version_a, code_root=root_a)
    assert [o.outputs for o in (first, again, other, back)] == [
        {"result": "10"},
        {"result": "20"},
        {"result": "100"},
        {"result": "10"},
    ]
