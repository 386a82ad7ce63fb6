"""Values PostgreSQL cannot hold as they are (NUL characters) are stored escaped and read back as they were; a
message PostgreSQL still refuses is quarantined alone, and the rest of its batch is projected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.client import AsyncClient
from plait.core.events import NodeFailed, TaskError
from plait.protocol import subjects
from plait_catalog import db
from plait_catalog.migrations import migrate
from plait_catalog.nul_escapes import decode_json, encode_json, escape_text, restore_text
from plait_catalog.projection import StoredMessage, apply_batch, stored_offset
from tests import nul_workflows, workflows
from tests.helpers.catalog_reads import projected
from tests.helpers.launching import launch_decision, stored_decision
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 30.0
AWKWARD = st.text(alphabet=st.sampled_from(["a", "0", "1", "\x00", "\uffff", "é"]))


@given(AWKWARD)
def test_escaping_text_is_undone_exactly_and_leaves_no_nul(text: str) -> None:
    escaped = escape_text(text)
    assert "\x00" not in escaped
    assert restore_text(escaped) == text


@given(
    st.recursive(AWKWARD | st.integers() | st.none(), lambda inner: st.lists(inner) | st.dictionaries(AWKWARD, inner))
)
def test_escaping_json_is_undone_exactly(value: Any) -> None:
    text = encode_json(value)
    assert "\\u0000" not in text
    assert decode_json(text) == value


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url, concurrency=1) as plait_client:
        yield plait_client


async def test_nul_characters_in_inputs_outputs_errors_and_reasons_are_stored_and_read_back(
    client: AsyncClient,
) -> None:
    echoed = await final_state(client, await client.launch(nul_workflows.echo_nul, {"text": "in\x00put"}), DEADLINE)
    assert echoed.outputs == {"result": "in\x00put\x00out\uffff"}
    shown = await projected(client, echoed.execution_id)
    assert (shown.status, shown.inputs, shown.outputs) == (
        "succeeded",
        {"text": "in\x00put"},
        {"result": "in\x00put\x00out\uffff"},
    )

    failed = await final_state(client, await client.launch(nul_workflows.fail_nul, {"text": "x\x00y"}), DEADLINE)
    shown = await projected(client, failed.execution_id)
    assert shown.status == "failed"
    assert shown.error["message"] == "cannot\x00read x\x00y"
    assert "cannot\x00read" in shown.error["traceback"]

    paused = (await client.launch(workflows.paused, {"seconds": 60.0})).id
    await client.abort(paused, reason="stop\x00now")
    assert (await final_state(client, paused, DEADLINE)).status == "aborted"
    assert (await projected(client, paused)).abort_reason == "stop\x00now"


def _launch(execution_id: str) -> bytes:
    return launch_decision(workflows.add_two.spec, {"a": 1, "b": 2}, execution_id)


async def test_a_message_postgresql_or_the_rows_refuse_is_kept_aside_and_the_rest_of_its_batch_projected(
    database_url: str,
) -> None:
    at = datetime.now(UTC)
    subject = subjects.execution_subject("default", "development", "any")
    messages = [
        StoredMessage(1, subject, _launch("first"), at),
        StoredMessage(2, subject, _launch("bad\x00id"), at),  # a key: arrays of keys are not escaped
        StoredMessage(3, subject, _launch("third"), at),
        StoredMessage(4, subject, stored_decision("first", [NodeFailed("no-such-node", TaskError("user", "x"))]), at),
        StoredMessage(5, subject, _launch("fifth"), at),
    ]
    kept: list[tuple[int, str]] = []

    async def keep_aside(message: StoredMessage, reason: str) -> None:
        kept.append((message.sequence, reason))

    connection = await db.connect(database_url, "test-nul")
    try:
        await migrate(connection)
        assert await apply_batch(connection, messages, keep_aside=keep_aside) == 5
        assert [sequence for sequence, _ in kept] == [2, 4]
        assert "CharacterNotInRepertoireError" in kept[0][1] and "no-such-node" in kept[1][1]
        rows = await connection.fetch("SELECT execution_id FROM executions ORDER BY execution_id")
        assert [row["execution_id"] for row in rows] == ["fifth", "first", "third"]
        assert await stored_offset(connection) == 5
    finally:
        await connection.close()
