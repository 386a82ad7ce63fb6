"""Task secrets on the real stack: resolved by the executor from its environment, read by the task, and found in no
event, no command, no log line, no catalog row and no output capture (redacted); a missing one fails the attempt
naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest
import structlog.testing

from plait.client import AsyncClient
from plait.sdk.secrets import REDACTED, env_name
from tests import secret_workflows
from tests.helpers.catalog_log import dump
from tests.helpers.catalog_reads import projected
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 30.0
VALUE = "hunter2-Tr0ub4dor&3"


@pytest.fixture
async def client(nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncClient]:
    monkeypatch.setenv(env_name(secret_workflows.SECRET), VALUE)
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def stored(nats_url: str) -> bytes:
    """Every message every stream holds, concatenated."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        everything = b""
        for stream in await js.streams_info():
            if not stream.state.messages:
                continue
            for sequence in range(stream.state.first_seq, stream.state.last_seq + 1):
                try:
                    raw = await js.get_msg(stream.config.name or "", sequence)
                except nats.js.errors.NotFoundError:
                    continue
                everything += (raw.subject or "").encode() + (raw.data or b"") + repr(raw.headers).encode()
        return everything
    finally:
        await nc.close()


async def test_a_secret_reaches_its_task_and_nothing_else(
    client: AsyncClient, nats_url: str, database_url: str
) -> None:
    with structlog.testing.capture_logs() as logs:
        ok = await client.launch(secret_workflows.load, {"user": "ada"})
        ok_state = await final_state(client, ok.id, DEADLINE)
        failing = await client.launch(secret_workflows.load_and_fail, {"user": "ada"})
        failed_state = await final_state(client, failing.id, DEADLINE)
        await projected(client, failing.id)
        output = await client.logs(ok.id)
        failed_output = await client.logs(failing.id)
    assert ok_state.status == "succeeded", ok_state
    assert ok_state.outputs == {"result": f"connected as ada with a password of {len(VALUE)} characters"}
    assert f"connecting as ada with {REDACTED}" in output, "the task read the secret; its capture is redacted"
    assert f"the password is {REDACTED}" in output
    [error] = [a.error for n in failed_state.nodes.values() for a in n.attempts if a.error]
    assert error.kind == "user" and error.message == f"login refused for ada with password {REDACTED}"
    assert VALUE not in error.traceback
    assert VALUE not in output + failed_output, "no output capture holds it"
    assert logs and VALUE not in repr(logs), "no log line holds it"
    assert VALUE.encode() not in await stored(nats_url), "no event, command or stored object holds it"
    connection = await asyncpg.connect(database_url)
    try:
        rows = repr(await dump(connection))
    finally:
        await connection.close()
    assert ok.id in rows and VALUE not in rows, "no catalog row holds it"


async def test_an_output_holding_a_secret_fails_the_attempt(client: AsyncClient, nats_url: str) -> None:
    state = await final_state(client, (await client.launch(secret_workflows.load_and_leak, {"user": "ada"})).id)
    [error] = [a.error for n in state.nodes.values() for a in n.attempts if a.error]
    assert (error.kind, error.error_type) == ("user", "SecretInOutput")
    assert "secret 'warehouse-password'" in error.message
    assert VALUE.encode() not in await stored(nats_url)


async def test_a_missing_secret_fails_the_attempt_naming_it(client: AsyncClient) -> None:
    state = await final_state(client, (await client.launch(secret_workflows.load_without_secret, {})).id, DEADLINE)
    assert state.status == "failed"
    [error] = [a.error for n in state.nodes.values() for a in n.attempts if a.error]
    assert (error.kind, error.error_type) == ("user", "SecretMissing")
    assert "secret 'missing-secret' is not set" in error.message and env_name("missing-secret") in error.message
