"""Tenants confined by the broker: a real nats-server with the shipped deploy/nats/tenants.conf."""

from __future__ import annotations

import json
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest
from nats.aio.client import Client as NATS

from plait import codec
from plait.adapters.connection import FIRST_CONNECT_SECONDS, connect
from plait.adapters.nats_auth import NatsAuth, tenant_inbox
from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient
from plait.core.commands import LaunchExecution
from plait.core.events import ExecutionLaunched, ExecutionSucceeded
from plait.errors import ConnectError, InputError
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID, PLAIT_ERROR
from plait_catalog import CatalogService
from plait_cli.embedded import NatsServer
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.embedded_processes import kill_all, plait, processes_using, wait_for_dev, wait_until_gone
from tests.helpers.plait_command import plait_command
from tests.helpers.running import running
from tests.helpers.secured_nats import DEADLINE, SecuredNats, secured_nats, watched
from tests.helpers.tls_files import Signed, authority, signed

ALPHA, BETA, DOMAIN = "alpha", "beta", "development"


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SecuredNats]:
    with secured_nats(tmp_path, monkeypatch) as server:
        yield server


@pytest.fixture
async def operator(secured: SecuredNats) -> AsyncIterator[NATS]:
    nc = await connect(secured.url, "operator", auth=secured.auth("plait-operator"))
    await ensure_streams(nc.jetstream())
    try:
        yield nc
    finally:
        await nc.close()


async def stored(operator: NATS, stream: str) -> int:
    return (await operator.jetstream().stream_info(stream)).state.messages


async def test_a_project_client_reaches_nothing_of_another_project(secured: SecuredNats, operator: NATS) -> None:
    alpha = await watched(secured, "alpha-development", tenant_inbox(ALPHA, DOMAIN))
    try:
        ack = await alpha.nc.jetstream().publish(
            subjects.command_subject(ALPHA, DOMAIN, "e1", "launch"), b"{}", stream=subjects.COMMANDS_STREAM
        )
        assert ack.seq == 1
        forbidden = [
            subjects.command_subject(BETA, DOMAIN, "e1", "launch"),  # launch
            subjects.command_subject(BETA, DOMAIN, "e1", "abort"),  # abort
            subjects.command_subject(ALPHA, DOMAIN, "e1", "result"),  # a result, even of its own project
            subjects.command_subject(ALPHA, DOMAIN, "e1", "started"),
            subjects.execution_subject(ALPHA, DOMAIN, "e1"),  # an event
            subjects.execution_subject(BETA, DOMAIN, "e1"),
            subjects.dispatch_subject("local", "default"),
            subjects.catalog_subject(BETA, DOMAIN, subjects.CATALOG_LIST_EXECUTIONS),  # list
            subjects.catalog_subject(BETA, DOMAIN, subjects.CATALOG_SHOW_EXECUTION),  # read
            subjects.CATALOG_REBUILD,
            f"$JS.API.DIRECT.GET.{subjects.EVENTS_STREAM}.{subjects.execution_subject(BETA, DOMAIN, 'e1')}",
            f"$JS.API.CONSUMER.CREATE.{subjects.EVENTS_STREAM}.x.{subjects.execution_subject(BETA, DOMAIN, 'e1')}",
            f"$JS.API.CONSUMER.CREATE.{subjects.COMMANDS_STREAM}.x.plait.cmd.>",
            f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}",
            f"$JS.API.STREAM.PURGE.{subjects.COMMANDS_STREAM}",
            f"$JS.API.STREAM.UPDATE.{subjects.EVENTS_STREAM}",
            "$JS.API.STREAM.CREATE.ELSEWHERE",
        ]
        for subject in forbidden:
            await alpha.nc.publish(subject, b"{}")
            assert "publish" in (await alpha.refused(subject)).lower()
        for subject in (  # follow, or hear the replies of, another project
            f"{subjects.EVENTS_ROOT}.{BETA}.{DOMAIN}.>",
            f"{subjects.NOTIFY_ROOT}.{BETA}.{DOMAIN}.>",
            tenant_inbox(BETA, DOMAIN) + ".>",
            "_INBOX.>",
            ">",
        ):
            await alpha.nc.subscribe(subject)
            assert "subscription" in (await alpha.refused(subject)).lower()
        assert await stored(operator, subjects.COMMANDS_STREAM) == 1  # its own launch, nothing else
        assert await stored(operator, subjects.EVENTS_STREAM) == 0
        assert len(await operator.jetstream().streams_info()) >= 5  # no stream was deleted
    finally:
        await alpha.nc.close()


async def test_the_auditor_reads_every_project_and_writes_nothing(secured: SecuredNats, operator: NATS) -> None:
    for project in (ALPHA, BETA):
        subject = subjects.execution_subject(project, DOMAIN, "e1")
        await operator.jetstream().publish(subject, project.encode(), stream=subjects.EVENTS_STREAM)
    auditor = await watched(secured, "plait-auditor")
    try:
        js = auditor.nc.jetstream()
        for project in (ALPHA, BETA):
            last = await js.get_msg(subjects.EVENTS_STREAM, subject=subjects.execution_subject(project, DOMAIN, "e1"))
            assert last.data == project.encode()
        follower = await js.subscribe(f"{subjects.EVENTS_ROOT}.>", ordered_consumer=True)
        with anyio.fail_after(DEADLINE):
            assert {(await follower.next_msg(timeout=DEADLINE)).data for _ in range(2)} == {b"alpha", b"beta"}
        for subject in (
            subjects.command_subject(ALPHA, DOMAIN, "e1", "launch"),
            subjects.command_subject(ALPHA, DOMAIN, "e1", "result"),
            subjects.execution_subject(BETA, DOMAIN, "e2"),
            subjects.CATALOG_REBUILD,
            f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}",
            f"$JS.API.STREAM.UPDATE.{subjects.EVENTS_STREAM}",
            f"$JS.API.STREAM.PURGE.{subjects.EVENTS_STREAM}",
            "$JS.API.STREAM.CREATE.ELSEWHERE",
            f"$JS.API.CONSUMER.CREATE.{subjects.COMMANDS_STREAM}.x.plait.cmd.>",  # would take the services' work
            f"$JS.API.CONSUMER.DELETE.{subjects.EVENTS_STREAM}.x",
        ):
            await auditor.nc.publish(subject, b"{}")
            assert "publish" in (await auditor.refused(subject)).lower()
        assert await stored(operator, subjects.EVENTS_STREAM) == 2
        assert await stored(operator, subjects.COMMANDS_STREAM) == 0
    finally:
        await auditor.nc.close()


async def test_a_confined_client_asks_the_catalog_of_its_own_project_only(
    secured: SecuredNats, operator: NATS, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = secured.auth("plait-services")
    monkeypatch.setenv("PLAIT_NATS_USER", services.user)  # the catalog's credentials, from its settings
    monkeypatch.setenv("PLAIT_NATS_PASSWORD_FILE", services.password_file)
    async with anyio.create_task_group() as tg:
        await tg.start(CatalogService(secured.url, database_url, replica="secured").run)
        async with await AsyncClient.connect(
            secured.url, ALPHA, DOMAIN, auth=secured.auth("alpha-development")
        ) as client:
            assert await client.list_executions() == []
            asked = subjects.catalog_subject(ALPHA, DOMAIN, subjects.CATALOG_LIST_EXECUTIONS)
            reply = await client.nc.request(asked, msgspec.json.encode({"project": BETA}), timeout=DEADLINE)
            error = msgspec.json.decode(reply.data)["error"]
            assert error["type"] == "bad_request"
            assert "names project 'beta'" in error["message"]
        with pytest.raises(InputError, match="PLAIT_NATS_PASSWORD_FILE names"):
            await AsyncClient.connect(
                secured.url, BETA, DOMAIN, auth=msgspec.structs.replace(services, password_file="/nonexistent")
            )
        tg.cancel_scope.cancel()


async def test_a_confined_client_registers_launches_and_takes_its_result(
    secured: SecuredNats, operator: NATS, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = secured.auth("plait-services")
    monkeypatch.setenv("PLAIT_NATS_USER", services.user)
    monkeypatch.setenv("PLAIT_NATS_PASSWORD_FILE", services.password_file)
    scheduler = SchedulerService(secured.url, replica="secured-scheduler")
    executor = ExecutorService(secured.url, concurrency=1, replica="secured-executor")
    catalog = CatalogService(secured.url, database_url, replica="secured-catalog")
    async with running(scheduler.run, executor.run, catalog.run):
        alpha_auth = secured.auth("alpha-development")
        async with await AsyncClient.connect(secured.url, ALPHA, DOMAIN, auth=alpha_auth) as client:
            handle = await client.launch(workflows.add_two, {"a": 1, "b": 2})
            with anyio.fail_after(DEADLINE * 3):
                assert await handle.result() == 3
                followed = [stored.decision async for stored in client.events(handle.id)]  # its own: it may follow
            assert isinstance(followed[0].events[0], ExecutionLaunched)
            assert isinstance(followed[-1].events[-1], ExecutionSucceeded)
            shown = await client.show_execution(handle.id)
            assert (shown.status, shown.outputs) == ("succeeded", {"result": 3})
            assert [e.execution_id for e in await client.list_executions()] == [handle.id]

            forged = LaunchExecution(
                command_id="forged-1",
                execution_id="forged",
                project=BETA,  # on alpha's subject, which alpha may publish to
                domain=DOMAIN,
                workflow=workflows.add_two.name,
                version=shown.version,
                inputs={"a": 1, "b": 2},
            )
            command_subject = subjects.command_subject(ALPHA, DOMAIN, "forged", "launch")
            refusals = await client.nc.subscribe(subjects.dead_letter_subject(command_subject))
            await client.js.publish(
                command_subject,
                codec.encode(forged),
                stream=subjects.COMMANDS_STREAM,
                headers={NATS_MSG_ID: "forged-1"},
            )
            refusal = await refusals.next_msg(timeout=DEADLINE)
            assert "was sent on subject" in (refusal.headers or {})[PLAIT_ERROR]
        async with await AsyncClient.connect(secured.url, BETA, DOMAIN, auth=secured.auth("beta-development")) as other:
            assert await other.list_executions() == []  # alpha's execution is not beta's to see


async def test_plait_dev_secure_authenticates_and_confines_its_users(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dev = plait(["dev", "--secure"], home)
    try:
        wait_for_dev(dev, home)
        url = msgspec.json.decode((home / "dev.json").read_bytes())["nats_url"]
        with pytest.raises(ConnectError, match="Authorization Violation"):
            await connect(url, "anonymous", auth=NatsAuth())
        alpha_password = home / "secrets" / "alpha-development.password"
        assert stat.S_IMODE(alpha_password.stat().st_mode) == 0o600
        alpha = NatsAuth(user="alpha-development", password_file=str(alpha_password))
        async with await AsyncClient.connect(url, ALPHA, DOMAIN, auth=alpha) as client:
            assert await client.list_executions() == []  # the catalog, connected as plait-services, answers
        as_alpha = {
            "PLAIT_PROJECT": ALPHA,
            "PLAIT_NATS_USER": alpha.user,
            "PLAIT_NATS_PASSWORD_FILE": str(alpha_password),
        }
        listed = plait_command(["executions", "list"], {"PLAIT_HOME": str(home), "PLAIT_NATS_URL": "", **as_alpha})
        assert listed.returncode == 0, listed.stderr
        as_beta = {**as_alpha, "PLAIT_PROJECT": BETA}  # alpha's credentials cannot ask beta's catalog
        refused = plait_command(["executions", "list"], {"PLAIT_HOME": str(home), "PLAIT_NATS_URL": "", **as_beta})
        assert refused.returncode != 0
        dev.send_signal(signal.SIGINT)
        dev.communicate(timeout=30)
        assert not wait_until_gone(home)
    finally:
        kill_all(processes_using(home))
        dev.kill()


def verifying_server(tmp_path: Path) -> tuple[NatsServer, Signed, Signed]:
    """A nats-server on TLS that verifies its clients' certificates; its CA's files and a client's, signed by it."""
    ca = authority(tmp_path / "ca", "plait-test-ca")
    server = signed(tmp_path / "ca", ca, "nats-server", server=True)
    client = signed(tmp_path / "ca", ca, "plait-client", server=False)
    tls = (
        f"tls {{\n  cert_file: {json.dumps(str(server.cert))}\n  key_file: {json.dumps(str(server.key))}\n"
        f"  ca_file: {json.dumps(str(ca.cert))}\n  verify: true\n}}"
    )
    return NatsServer.start(tmp_path / "nats", extra_config=tls), ca, client


async def test_the_server_verifies_the_client_certificate(tmp_path: Path) -> None:
    nats_server, ca, client = verifying_server(tmp_path)
    with nats_server:
        url = nats_server.url.replace("nats://", "tls://")
        trusted = NatsAuth(tls_ca=str(ca.cert), tls_cert=str(client.cert), tls_key=str(client.key))
        nc = await connect(url, "tls-client", auth=trusted)
        try:
            assert nc.is_connected
            await ensure_streams(nc.jetstream())  # JetStream over the verified connection
        finally:
            await nc.close()
        with pytest.raises(ConnectError):  # no client certificate: the server refuses
            await connect(url, "anonymous", auth=NatsAuth(tls_ca=str(ca.cert)))


async def test_a_server_certificate_of_an_untrusted_authority_is_refused_at_once_and_said_so(tmp_path: Path) -> None:
    other = authority(tmp_path / "other", "another-ca")
    nats_server, _, client = verifying_server(tmp_path)
    with nats_server:
        url = nats_server.url.replace("nats://", "tls://")
        trusting_another = NatsAuth(tls_ca=str(other.cert), tls_cert=str(client.cert), tls_key=str(client.key))
        with anyio.fail_after(FIRST_CONNECT_SECONDS / 2), pytest.raises(ConnectError) as refused:
            await connect(url, "tls-client", auth=trusting_another)
    assert "TLS certificate is not trusted" in str(refused.value)
    assert "PLAIT_NATS_TLS_CA" in str(refused.value)
