"""Hostile commands through a real scheduler: each is dead-lettered at its first delivery, and the replica goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from plait import codec
from plait.client import AsyncClient
from plait.protocol import subjects
from plait.protocol.headers import CONTENT_TYPE, NATS_MSG_ID, PLAIT_ERROR, PLAIT_REPLY_TO
from plait_scheduler import SchedulerService
from plait_scheduler.service import COMMANDS_CONSUMER
from tests import workflows
from tests.helpers.dead_letters import read_dead_letters
from tests.helpers.running import running

NAMES = st.sampled_from(["nowhere", "", "has space", "dot.ted", "star*", "gt>", "ü", "x" * 300])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=20,
)
MUTATIONS = [
    "none",
    "wrong_type",
    "missing",
    "unknown_type",
    "deep",
    "huge",
    "msgpack",
    "extension",
    "truncated",
    "not_an_object",
]


@st.composite
def command_fields(draw: st.DrawFn, execution_id: str) -> dict[str, Any]:
    """The fields of a well-formed command of any type, for an execution that does not exist (or for another one,
    or with names no subject can hold)."""
    execution_id = draw(st.sampled_from([execution_id, execution_id, "elsewhere"]) | NAMES)
    common = {"command_id": f"c-{execution_id}-{draw(st.integers(0, 10**6))}", "execution_id": execution_id}
    attempt = {"node": draw(NAMES), "attempt_id": draw(NAMES), "worker": "w"}
    result = {"type": "report_attempt_result.v1", **common, **attempt, "outputs": {"result": draw(JSON)}}
    report = {"type": "report_cache_lookup.v1", **common, "node": "n", "cache_key": "k", "round": 1, "outcome": "hit"}
    return draw(
        st.sampled_from(
            [
                {
                    "type": "launch_execution.v1",
                    **common,
                    "project": draw(NAMES),
                    "domain": "development",
                    "workflow": draw(NAMES),
                    "version": "1",
                    "inputs": draw(st.dictionaries(st.text(max_size=3), JSON)),
                },
                {"type": "report_attempt_started.v1", **common, **attempt},
                result,
                {"type": "report_attempt_results.v1", **common, "results": [result]},
                {"type": "report_cache_lookups.v1", **common, "reports": [report]},
                {
                    "type": "retry_due.v1",
                    **common,
                    "node": draw(NAMES),
                    "attempt": draw(st.integers(-(2**63), 2**63 - 1)),
                },
                {"type": "abort_execution.v1", **common, "reason": draw(st.text(max_size=50))},
            ]
        )
    )


@st.composite
def hostile_command(draw: st.DrawFn, execution_id: str) -> tuple[bytes, dict[str, str]]:
    """A command no scheduler can apply (nothing is registered, no execution exists), in any malformed shape."""
    fields = draw(command_fields(execution_id))
    mutation = draw(st.sampled_from(MUTATIONS))
    field = draw(st.sampled_from(sorted(fields)))
    if mutation == "wrong_type":
        fields[field] = draw(JSON)
    elif mutation == "missing":
        del fields[field]
    elif mutation == "unknown_type":
        fields["type"] = draw(st.sampled_from(["launch_execution.v9", "", "x"]))
    elif mutation == "deep":  # as bytes: past about 1,000 levels msgspec cannot even encode it
        depth = draw(st.integers(60, 3000))
        fields["inputs"] = {"x": 0}
        return msgspec.json.encode(fields).replace(b'"x":0', b'"x":' + b"[" * depth + b"]" * depth), {}
    elif mutation == "huge":
        fields["reason"] = "y" * draw(st.integers(100_000, 500_000))
    elif mutation == "not_an_object":
        return msgspec.json.encode([fields]), {}
    if mutation in ("msgpack", "extension"):
        if mutation == "extension":
            fields["inputs"] = {"x": msgspec.msgpack.Ext(draw(st.integers(0, 127)), b"x")}
        return msgspec.msgpack.encode(fields), {CONTENT_TYPE: codec.MSGPACK}
    data = msgspec.json.encode(fields)
    if mutation == "truncated":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    return data, {}


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.connect(nats_url) as plait_client:
        yield plait_client


COMMANDS = 16


@settings(
    max_examples=4,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: each example runs a scheduler
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_hostile_commands_are_each_dead_lettered_at_once_and_a_launch_is_still_decided(
    client: AsyncClient, nats_url: str, data: st.DataObject
) -> None:
    run = f"{data.draw(st.integers(0, 10**9))}"
    await client.js.purge_stream(subjects.DEAD_LETTER_STREAM)
    async with running(SchedulerService(nats_url, replica="hostile").run):
        for index in range(COMMANDS):
            execution_id = f"hostile-{run}-{index}"
            payload, headers = data.draw(hostile_command(execution_id))
            subject = subjects.command_subject(client.project, client.domain, execution_id, "launch")
            reply = {PLAIT_REPLY_TO: "not a subject" if index % 2 else client.nc.new_inbox()}
            await client.js.publish(
                subject, payload, headers={**headers, **reply, NATS_MSG_ID: execution_id}, timeout=10
            )  # its ack waits behind the server's fsync: 2 s (the default) was too short once on a loaded machine
        kept = await read_dead_letters(client.js, COMMANDS)
        assert all(msg.headers and msg.headers[PLAIT_ERROR] for msg in kept)
        info = await client.js.consumer_info(subjects.COMMANDS_STREAM, COMMANDS_CONSUMER)
        assert info.num_redelivered == 0, "each was settled at its first delivery: none raised what was not expected"
        with anyio.fail_after(30):
            await client.launch(workflows.add_two, {"a": 1, "b": 2}, execution_id=f"after-{run}")
