"""A Kubernetes attempt's pod connects with its own task grant, which the executors' auth callout turns into a user
allowed only what that attempt needs: against a real nats-server with the shipped tenants.conf (auth callout on)."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import anyio
import nats.errors
import pytest
import structlog
from nats.aio.client import Client as NATS

from plait import codec
from plait.adapters.buckets import put_object, read_object
from plait.adapters.connection import connect
from plait.adapters.nats_auth import NatsAuth, attempt_inbox, tenant_inbox
from plait.client import AsyncClient
from plait.core.dispatch import Dispatch
from plait.errors import ConnectError
from plait.protocol import nats_jwt, nats_xkey, subjects
from plait_catalog import CatalogService
from plait_executor.task_callout import AUTH_CALLOUT_SUBJECT, serve_task_callout
from plait_executor.task_grants import TaskGrant, grant_for, issue
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.processes import REPO
from tests.helpers.running import running
from tests.helpers.secured_nats import DEADLINE, SecuredNats, Watched, make_streams_as_operator, secured_nats, watched

ALPHA, BETA, DOMAIN = "alpha", "beta", "development"
EXECUTION, OTHER_EXECUTION = "e1", "e2"
ATTEMPT, SIBLING = "e1/load/1", "e1/load-2/1"


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SecuredNats]:
    """The secured server, its streams, and the task callout answering on a services connection."""
    with secured_nats(tmp_path, monkeypatch) as server:
        await make_streams_as_operator(server)
        services = await connect(server.url, "test-callout", auth=server.auth("plait-services"))
        key = nats_jwt.read_account_key(server.callout_seed_file, "callout seed")
        try:
            async with running(partial(serve_task_callout, services, key)):
                yield server
        finally:
            await services.close()


def grant_file(secured: SecuredNats, folder: Path, grant: TaskGrant, key: object = None) -> NatsAuth:
    """The credentials of a pod holding ``grant`` (signed with the callout's key, or ``key``)."""
    signer = key or nats_jwt.read_account_key(secured.callout_seed_file, "callout seed")
    path = folder / f"grant-{time.monotonic_ns()}"
    path.write_text(issue(grant, signer))
    return NatsAuth(token_file=str(path))


def a_grant(**changes: object) -> TaskGrant:
    fields: dict[str, object] = {
        "project": ALPHA,
        "domain": DOMAIN,
        "execution_id": EXECUTION,
        "node": "load",
        "attempts": (ATTEMPT,),
        "expires_at": int(time.time()) + 600,
    }
    return TaskGrant(**{**fields, **changes})  # type: ignore[arg-type]


async def pod(secured: SecuredNats, tmp_path: Path, grant: TaskGrant) -> Watched:
    auth = grant_file(secured, tmp_path, grant)
    return await watched(secured, "", attempt_inbox(grant.project, grant.domain, grant.attempts[0]), auth=auth)


async def test_a_pods_grant_reports_its_own_attempt_and_nothing_else(secured: SecuredNats, tmp_path: Path) -> None:
    task = await pod(secured, tmp_path, a_grant())
    try:
        js = task.nc.jetstream()
        own = subjects.attempt_scope(ATTEMPT)
        for kind in ("started", "result"):  # what it is for, on its attempt's scope
            subject = subjects.command_subject(ALPHA, DOMAIN, EXECUTION, kind, own)
            assert (await js.publish(subject, b"{}", stream=subjects.COMMANDS_STREAM)).seq >= 1
        own_output = subjects.live_output_subject(ALPHA, DOMAIN, EXECUTION, ATTEMPT)
        assert (await js.publish(own_output, b"x", stream=subjects.LIVE_OUTPUT_STREAM)).seq >= 1
        forbidden = [
            subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "result"),  # a service's, any attempt's
            subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "started"),
            subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "result", subjects.attempt_scope(SIBLING)),
            subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "result", subjects.node_scope("load")),  # its node's
            subjects.command_subject(ALPHA, DOMAIN, OTHER_EXECUTION, "result", own),  # another execution's
            subjects.command_subject(ALPHA, DOMAIN, OTHER_EXECUTION, "started"),
            subjects.command_subject(BETA, DOMAIN, EXECUTION, "result"),  # another project's
            subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "launch"),
            subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "abort"),
            subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "signal"),
            subjects.live_output_subject(ALPHA, DOMAIN, EXECUTION, SIBLING),  # another attempt's output
            subjects.execution_subject(ALPHA, DOMAIN, EXECUTION),  # an event
            subjects.dispatch_subject("local", "default"),
            subjects.catalog_subject(ALPHA, DOMAIN, subjects.CATALOG_LIST_EXECUTIONS),
            subjects.registration_subject(ALPHA, DOMAIN, "task", "t", "v1"),  # not a @dynamic task
            f"$JS.API.DIRECT.GET.{subjects.EVENTS_STREAM}.{subjects.execution_subject(ALPHA, DOMAIN, EXECUTION)}",
            f"$JS.API.CONSUMER.CREATE.{subjects.EVENTS_STREAM}",
            f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}",
            f"$JS.API.STREAM.PURGE.{subjects.COMMANDS_STREAM}",
            f"$JS.API.STREAM.PURGE.OBJ_{subjects.LOGS_BUCKET}",  # every attempt's output
        ]
        for subject in forbidden:
            await task.nc.publish(subject, b"{}")
            assert "publish" in (await task.refused(subject)).lower(), subject
        for subject in (
            f"{subjects.EVENTS_ROOT}.{ALPHA}.{DOMAIN}.>",  # reading events
            f"{subjects.NOTIFY_ROOT}.{ALPHA}.{DOMAIN}.>",
            tenant_inbox(ALPHA, DOMAIN) + ".>",  # its project clients' replies
            attempt_inbox(ALPHA, DOMAIN, SIBLING) + ".>",  # another attempt's replies
            attempt_inbox(BETA, DOMAIN, ATTEMPT) + ".>",
        ):
            await task.nc.subscribe(subject)
            assert "subscription" in (await task.refused(subject)).lower(), subject
    finally:
        await task.nc.close()


async def test_a_pods_grant_writes_and_reads_back_a_large_value(secured: SecuredNats, tmp_path: Path) -> None:
    task = await pod(secured, tmp_path, a_grant())
    try:
        js = task.nc.jetstream()
        store = await js.object_store(subjects.VALUES_BUCKET)
        value = hashlib.sha256(b"value").digest() * (4 * 32768)  # 4 MiB: 32 chunks, and flow control answered
        await put_object(js, subjects.VALUES_BUCKET, "by-the-pod", value)
        read = io.BytesIO()
        with anyio.fail_after(DEADLINE):
            await read_object(js, store, subjects.VALUES_BUCKET, "by-the-pod", read)
        assert read.getvalue() == value
        assert task.refusals == []
    finally:
        await task.nc.close()


async def test_a_dynamic_tasks_grant_may_register_in_its_project(secured: SecuredNats, tmp_path: Path) -> None:
    task = await pod(secured, tmp_path, a_grant(dynamic=True))
    try:
        registration = subjects.registration_subject(ALPHA, DOMAIN, "task", "generated", "v1")
        assert (await task.nc.jetstream().publish(registration, b"{}", stream=subjects.EVENTS_STREAM)).seq >= 1
        elsewhere = subjects.registration_subject(BETA, DOMAIN, "task", "generated", "v1")
        await task.nc.publish(elsewhere, b"{}")
        assert "publish" in (await task.refused(elsewhere)).lower()
    finally:
        await task.nc.close()


async def test_a_map_jobs_grant_reports_on_its_nodes_scope_only(secured: SecuredNats, tmp_path: Path) -> None:
    """A map Job's pods share one grant: they report on their node's scope, not on any one item's."""
    items = ("e1/squares[0]/1", "e1/squares[1]/1")
    task = await pod(secured, tmp_path, a_grant(node="squares", attempts=items, map_job=True))
    try:
        node = subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "result", subjects.node_scope("squares"))
        assert (await task.nc.jetstream().publish(node, b"{}", stream=subjects.COMMANDS_STREAM)).seq >= 1
        for subject in (
            subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "result", subjects.node_scope("load")),
            subjects.command_subject(ALPHA, DOMAIN, EXECUTION, "result", subjects.attempt_scope(items[0])),
        ):
            await task.nc.publish(subject, b"{}")
            assert "publish" in (await task.refused(subject)).lower(), subject
    finally:
        await task.nc.close()


async def test_the_servers_requests_to_the_callout_and_its_answers_are_sealed(
    secured: SecuredNats, tmp_path: Path
) -> None:
    """nats-server seals each authorization request to the callout's curve key: the grant is not on the wire."""
    listener = await connect(secured.url, "test-listener", auth=secured.auth("plait-services"))
    try:
        requests = await listener.subscribe(AUTH_CALLOUT_SUBJECT)  # beside the callout's queue group: gets them all
        auth = grant_file(secured, tmp_path, a_grant())
        task = await watched(secured, "", attempt_inbox(ALPHA, DOMAIN, ATTEMPT), auth=auth)
        await task.nc.close()
        request = await requests.next_msg(timeout=DEADLINE)
    finally:
        await listener.close()
    grant = (await anyio.Path(auth.token_file).read_text()).strip()
    assert (request.headers or {}).get(nats_xkey.SERVER_XKEY_HEADER, "").startswith("X")
    assert request.data.startswith(nats_xkey.SEALED_VERSION) and grant.encode() not in request.data
    assert b"auth_token" not in request.data


async def refusal(secured: SecuredNats, auth: NatsAuth) -> str:
    """What the server says to a connection with ``auth``, which must be refused."""
    with pytest.raises(ConnectError) as refused:
        nc = await connect(secured.url, "test-pod", auth=auth)
        await nc.close()
    return str(refused.value)


async def test_an_expired_forged_or_missing_grant_is_refused_with_its_reason_logged(
    secured: SecuredNats, tmp_path: Path
) -> None:
    expired_grant, forged_grant = a_grant(expires_at=int(time.time()) - 5), a_grant()
    expired = grant_file(secured, tmp_path, expired_grant)
    forged_key = nats_jwt.account_key(nats_jwt.new_seed())
    forged = grant_file(secured, tmp_path, forged_grant, key=forged_key)
    garbage = tmp_path / "garbage"
    garbage.write_text("not-a-grant")
    unsigned = tmp_path / "unsigned"
    unsigned.write_text(issue(a_grant(), nats_jwt.account_key(nats_jwt.new_seed())).rsplit(".", 1)[0] + ".")
    with structlog.testing.capture_logs() as logs:
        for auth in (expired, forged, NatsAuth(token_file=str(garbage)), NatsAuth(token_file=str(unsigned))):
            assert "authorization violation" in (await refusal(secured, auth)).lower()
        nc = NATS()  # no credentials at all
        with pytest.raises(nats.errors.Error):
            await nc.connect(secured.url, allow_reconnect=False, max_reconnect_attempts=0)
    reasons = [entry["reason"] for entry in logs if entry["event"] == "task_credential_refused"]
    assert any("expired" in reason for reason in reasons), reasons
    assert any("not signed by this deployment" in reason for reason in reasons), reasons
    assert any("not a task grant" in reason for reason in reasons), reasons
    assert any("no task grant" in reason for reason in reasons), reasons
    key = nats_jwt.read_account_key(secured.callout_seed_file, "callout seed")
    grants = [issue(expired_grant, key), issue(forged_grant, forged_key)]
    assert not any(grant in repr(entry) for entry in logs for grant in grants), "the callout never logs a grant"


async def test_a_pod_with_its_attempts_grant_runs_its_attempt(
    secured: SecuredNats, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
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
                message = await dispatches.next_msg(timeout=DEADLINE)
                dispatch: Dispatch = codec.dispatch_decoder.decode(message.data)
                grant = grant_file(secured, tmp_path, grant_for([dispatch], time.time()))
                env = {
                    **{name: value for name, value in os.environ.items() if not name.startswith("PLAIT_NATS_")},
                    "PLAIT_DISPATCH": message.data.decode(),
                    "PLAIT_NATS_URL": secured.url,
                    "PLAIT_NATS_TOKEN_FILE": grant.token_file,
                }
                ran = await anyio.run_process(
                    [sys.executable, "-m", "plait_executor.kubernetes.runtime", "--attempt", dispatch.attempt_id],
                    cwd=REPO,
                    env=env,
                    check=False,
                )
                with anyio.fail_after(DEADLINE * 3):
                    result = await handle.result()
    finally:
        await operator.close()
    assert ran.returncode == 0, ran.stderr.decode()[-2000:]
    assert "violation" not in ran.stderr.decode().lower(), ran.stderr.decode()[-2000:]
    assert result == 3
