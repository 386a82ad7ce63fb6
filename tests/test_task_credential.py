"""A Kubernetes pod's task runtime holds a credential of its project's tasks (tenants.conf,
``alpha-development-tasks``): with it the runtime runs an attempt end to end, and it can do nothing a task does not
need. Against a real nats-server with the shipped configuration."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from nats.aio.client import Client as NATS

from plait.adapters.connection import connect
from plait.adapters.nats_auth import tenant_inbox
from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient
from plait.protocol import subjects
from plait_catalog import CatalogService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.processes import REPO
from tests.helpers.running import running
from tests.helpers.secured_nats import DEADLINE, SecuredNats, secured_nats, watched

ALPHA, BETA, DOMAIN = "alpha", "beta", "development"
TASKS = "alpha-development-tasks"


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SecuredNats]:
    with secured_nats(tmp_path, monkeypatch) as server:
        operator = await connect(server.url, "test-operator", auth=server.auth("plait-operator"))
        try:
            await ensure_streams(operator.jetstream())
        finally:
            await operator.close()
        yield server


async def test_a_pod_with_its_projects_task_credential_runs_its_attempt(
    secured: SecuredNats, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = secured.auth("plait-services")
    monkeypatch.setenv("PLAIT_NATS_USER", services.user)
    monkeypatch.setenv("PLAIT_NATS_PASSWORD_FILE", services.password_file)
    scheduler = SchedulerService(secured.url, replica="secured-scheduler")
    catalog = CatalogService(secured.url, database_url, replica="secured-catalog")
    operator: NATS = await connect(secured.url, "test-operator", auth=secured.auth("plait-operator"))
    try:
        dispatches = await operator.subscribe(f"{subjects.DISPATCH_ROOT}.>")  # no executor: the test is the pod
        async with running(scheduler.run, catalog.run):
            alpha = secured.auth("alpha-development")
            async with await AsyncClient.connect(secured.url, ALPHA, DOMAIN, auth=alpha) as client:
                handle = await client.launch(workflows.add_two, {"a": 1, "b": 2})
                dispatch = await dispatches.next_msg(timeout=DEADLINE)
                tasks = secured.auth(TASKS)
                env = {
                    **os.environ,
                    "PLAIT_DISPATCH": dispatch.data.decode(),
                    "PLAIT_NATS_URL": secured.url,
                    "PLAIT_NATS_USER": tasks.user,
                    "PLAIT_NATS_PASSWORD_FILE": tasks.password_file,
                }
                attempt = f"{handle.id}/{workflows.add_two.spec.nodes[0].id}/1"
                pod = await anyio.run_process(
                    [sys.executable, "-m", "plait_executor.kubernetes.runtime", "--attempt", attempt],
                    cwd=REPO,
                    env=env,
                    check=False,
                )
                with anyio.fail_after(DEADLINE * 3):
                    result = await handle.result()
    finally:
        await operator.close()
    assert pod.returncode == 0, pod.stderr.decode()[-2000:]
    assert result == 3


async def test_a_task_credential_can_do_nothing_a_task_does_not_need(secured: SecuredNats) -> None:
    task = await watched(secured, TASKS, tenant_inbox(ALPHA, DOMAIN))
    try:
        forbidden = [
            subjects.command_subject(ALPHA, DOMAIN, "e1", "launch"),
            subjects.command_subject(ALPHA, DOMAIN, "e1", "abort"),
            subjects.command_subject(BETA, DOMAIN, "e1", "result"),  # another project's attempt
            subjects.execution_subject(ALPHA, DOMAIN, "e1"),  # an event
            subjects.dispatch_subject("local", "default"),
            subjects.catalog_subject(ALPHA, DOMAIN, subjects.CATALOG_LIST_EXECUTIONS),
            subjects.registration_subject(ALPHA, DOMAIN, "workflow", "wf", "v1"),
            f"$JS.API.DIRECT.GET.{subjects.EVENTS_STREAM}.{subjects.execution_subject(ALPHA, DOMAIN, 'e1')}",
            f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}",
            f"$JS.API.STREAM.PURGE.{subjects.COMMANDS_STREAM}",
        ]
        for subject in forbidden:
            await task.nc.publish(subject, b"{}")
            assert "publish" in (await task.refused(subject)).lower()
        for subject in (f"{subjects.EVENTS_ROOT}.{ALPHA}.{DOMAIN}.>", tenant_inbox(BETA, DOMAIN) + ".>"):
            await task.nc.subscribe(subject)
            assert "subscription" in (await task.refused(subject)).lower()
        ack = await task.nc.jetstream().publish(  # what it is for: its project's attempts' results
            subjects.command_subject(ALPHA, DOMAIN, "e1", "result"), b"{}", stream=subjects.COMMANDS_STREAM
        )
        assert ack.seq >= 1
    finally:
        await task.nc.close()
