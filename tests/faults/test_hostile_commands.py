"""Hostile commands published raw onto ``plait.cmd.<project>.<domain>.<execution>.<kind>`` against a real scheduler
process: each is dead-lettered with its reason in ``Plait-Error``, the scheduler stays up, and a good execution
running alongside ends as it would have."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import msgspec
import nats.js.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS

from plait import codec
from plait.adapters.connection import connect
from plait.adapters.nats_errors import WRONG_LAST_SEQUENCE
from plait.client import AsyncClient
from plait.protocol import subjects
from plait.protocol.headers import CONTENT_TYPE, NATS_EXPECTED_LAST_SEQUENCE, PLAIT_ERROR
from plait_cli.embedded import NatsServer
from tests import workflows
from tests.faults.harness import service_env, start_service, stopped_at_exit
from tests.helpers.processes import ServiceProcess

pytestmark = pytest.mark.faults

PROJECT, DOMAIN = "default", "development"
KINDS = ("launch", "started", "result", "cache", "abort", "retry", "signal")
EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
_tokens = itertools.count()


LAST_SEQUENCE = "<the stream's last sequence>"


class Target:
    """A scheduler process, a connection to publish with, and a good execution running alongside."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, nc: NATS, scheduler: ServiceProcess) -> None:
        self.portal, self.nc, self.scheduler = portal, nc, scheduler
        self.rejected = 0

    def send(
        self, kind: str, payload: bytes, headers: dict[str, str] | None = None, *, execution: str = "", scope: str = ""
    ) -> str:
        """Publish one command on the subject of ``kind`` (and ``scope``) for ``execution`` or a fresh one; returns
        the reason it was dead-lettered with."""
        subject = subjects.command_subject(PROJECT, DOMAIN, execution or fresh_execution(), kind, scope)
        reason: str = self.portal.call(self._publish_and_wait, subject, payload, headers or {})
        assert self.scheduler.process.poll() is None, f"the scheduler died: {self.scheduler.events[-5:]}"
        self.rejected += 1
        return reason

    async def _publish_and_wait(self, subject: str, payload: bytes, headers: dict[str, str]) -> str:
        dead_letters = await self.nc.subscribe(subjects.dead_letter_subject(subject))
        try:
            await self._store(subject, payload, headers)
            msg = await dead_letters.next_msg(timeout=10)
        finally:
            await dead_letters.unsubscribe()
        reason = (msg.headers or {}).get(PLAIT_ERROR, "")
        assert reason, f"dead letter of {subject} without a Plait-Error header"
        return reason

    async def _store(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish so that the command is stored. A ``Nats-Expected-Last-Sequence`` of ``LAST_SEQUENCE`` is the
        stream's last sequence at the time (the stream refuses any other; the good execution's commands move it,
        so a refused try is made again)."""
        js = self.nc.jetstream()
        for _ in range(50):
            sent = dict(headers)
            if sent.get(NATS_EXPECTED_LAST_SEQUENCE) == LAST_SEQUENCE:
                sent[NATS_EXPECTED_LAST_SEQUENCE] = str((await js.stream_info(subjects.COMMANDS_STREAM)).state.last_seq)
            try:
                await js.publish(subject, payload, headers=sent, stream=subjects.COMMANDS_STREAM)
                return
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE or sent == headers:
                    raise
        raise AssertionError(f"{subject}: the stream kept moving; the command was never stored")


def fresh_execution() -> str:
    return f"hostile-{next(_tokens)}"


@contextlib.contextmanager
def running_target(nats_url: str) -> Iterator[Target]:
    env = service_env(nats_url)
    processes = [start_service("scheduler", env), start_service("executor", env)]
    with stopped_at_exit(processes), anyio.from_thread.start_blocking_portal() as portal:
        nc = portal.call(connect, nats_url, "hostile-publisher")
        client = portal.call(AsyncClient.connect, nats_url)
        try:
            good = portal.call(client.launch, workflows.paused, {"seconds": 2.0})
            yield Target(portal, nc, processes[0])
            state = portal.call(good.wait, 30)
            assert state.status == "succeeded" and state.outputs == {"result": 2.0}, "the good execution was hit"
        finally:
            portal.call(client.close)
            portal.call(nc.close)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One server and scheduler for the tests that must pass today: starting them costs seconds."""
    with NatsServer.start(tmp_path_factory.mktemp("hostile-nats")) as server, running_target(server.url) as target:
        yield target


@pytest.fixture
def target(shared: Target) -> Target:
    return shared


@pytest.fixture
def own_target(nats_url: str) -> Iterator[Target]:
    """A scheduler of the test's own, for inputs that may crash it (known defects)."""
    with running_target(nats_url) as target:
        yield target


def _valid(kind: str, execution_id: str) -> dict[str, Any]:
    """A well-formed command of each kind (for an execution that does not exist)."""
    base = {"command_id": f"{execution_id}:c", "execution_id": execution_id}
    by_kind: dict[str, dict[str, Any]] = {
        "launch": {
            "type": "launch_execution.v1",
            "project": PROJECT,
            "domain": DOMAIN,
            "workflow": "w",
            "version": "1",
        },
        "started": {"type": "report_attempt_started.v1", "node": "n", "attempt_id": "a/n/1", "worker": "w"},
        "result": {"type": "report_attempt_result.v1", "node": "n", "attempt_id": "a/n/1", "worker": "w"},
        "cache": {"type": "report_cache_lookup.v1", "node": "n", "cache_key": "k", "round": 1, "outcome": "hit"},
        "abort": {"type": "abort_execution.v1"},
        "retry": {"type": "retry_due.v1", "node": "n", "attempt": 2},
        "signal": {"type": "send_signal.v1", "name": "approval", "value": 1},
    }
    return {**base, **by_kind[kind]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@EXAMPLES
@given(kind=st.sampled_from(KINDS), payload=st.binary(max_size=300))
def test_random_bytes_are_dead_lettered(target: Target, kind: str, payload: bytes) -> None:
    assert target.send(kind, payload)


@EXAMPLES
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_a_truncated_command_is_dead_lettered(target: Target, kind: str, data: st.DataObject) -> None:
    whole = msgspec.json.encode(_valid(kind, "x"))
    cut = data.draw(st.integers(0, len(whole) - 1))
    assert "malformed command" in target.send(kind, whole[:cut])


@EXAMPLES
@given(kind=st.sampled_from(KINDS), data=st.data(), value=json_values)
def test_a_field_of_the_wrong_type_is_dead_lettered(target: Target, kind: str, data: st.DataObject, value: Any) -> None:
    command = _valid(kind, "x")
    field = data.draw(st.sampled_from(sorted(command)))
    command[field] = value
    assert target.send(kind, msgspec.json.encode(command))


@EXAMPLES
@given(kind=st.sampled_from(KINDS), version=st.integers(2, 10**6))
def test_an_unknown_version_is_dead_lettered(target: Target, kind: str, version: int) -> None:
    command = _valid(kind, "x")
    command["type"] = command["type"].rsplit(".v", 1)[0] + f".v{version}"
    assert "malformed command" in target.send(kind, msgspec.json.encode(command))


@EXAMPLES
@given(kind=st.sampled_from(KINDS), execution_id=st.text(min_size=1, max_size=30))
def test_a_command_naming_another_or_an_invalid_execution_is_dead_lettered(
    target: Target, kind: str, execution_id: str
) -> None:
    """The payload's execution id is not the subject's: dots, wildcards, spaces, or just another id."""
    reason = target.send(kind, msgspec.json.encode(_valid(kind, execution_id)))
    assert "was sent on subject" in reason or "may only hold" in reason


def test_a_moderately_nested_command_is_dead_lettered(target: Target) -> None:
    nested: Any = 1
    for _ in range(100):
        nested = {"a": nested}
    assert target.send("launch", msgspec.json.encode({**_valid("launch", "x"), "inputs": {"deep": nested}}))


def test_a_huge_command_is_dead_lettered(target: Target) -> None:
    command = {**_valid("launch", "x"), "inputs": {"blob": "x" * 2_000_000}}
    assert target.send("launch", msgspec.json.encode(command))


@pytest.mark.parametrize("depth", [600, 1000])
def test_a_deeply_nested_command_is_dead_lettered(own_target: Target, depth: int) -> None:
    command = msgspec.json.encode({**_valid("launch", "x"), "inputs": {"deep": "DEEP"}})
    nested = b"[" * depth + b"1" + b"]" * depth  # written by hand: deeper than an encoder will go
    assert own_target.send("launch", command.replace(b'"DEEP"', nested))


def test_a_msgpack_extension_type_is_dead_lettered(own_target: Target) -> None:
    command = {**_valid("abort", "x"), "reason": msgspec.msgpack.Ext(1, b"boom")}
    assert own_target.send("abort", msgspec.msgpack.encode(command), {CONTENT_TYPE: codec.MSGPACK})


def test_a_command_with_a_copied_expectation_header_is_dead_lettered(own_target: Target) -> None:
    assert own_target.send("abort", b"{not json", {NATS_EXPECTED_LAST_SEQUENCE: LAST_SEQUENCE})


@pytest.mark.parametrize(("sent_as", "kind"), [("result", "abort"), ("started", "launch"), ("signal", "abort")])
def test_a_command_sent_on_another_kinds_subject_is_dead_lettered(target: Target, sent_as: str, kind: str) -> None:
    """A task's credential may send its attempt's reports only: another command in their place is refused."""
    execution = fresh_execution()
    command = _valid(kind, execution)
    if kind == "launch":
        command["execution_id"] = execution
    reason = target.send(sent_as, msgspec.json.encode(command), execution=execution)
    assert "command was sent on subject" in reason and f".{sent_as}" in reason


@pytest.mark.parametrize("kind", ["started", "result"])
def test_a_report_of_an_attempt_outside_its_subjects_scope_is_dead_lettered(target: Target, kind: str) -> None:
    """A task's process reports on its attempt's (or its map node's) scope: another attempt's report there is
    refused, whether the scope is another attempt's or another node's."""
    for scope_of in (subjects.attempt_scope, subjects.node_scope):
        execution = fresh_execution()
        attempt = f"{execution}/n/1"
        report = {**_valid(kind, execution), "node": "n", "attempt_id": attempt}
        scope = scope_of(f"{execution}/n/2" if scope_of is subjects.attempt_scope else "m")
        reason = target.send(kind, msgspec.json.encode(report), execution=execution, scope=scope)
        assert f"attempt {attempt} is not in the scope of subject" in reason
