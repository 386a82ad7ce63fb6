"""Live output across a restart of nats-server: the live output stream is in memory, so a standalone server that
restarted has lost it and every consumer of it. The executor makes the stream again at its first publish that finds
it gone, a paused attempt's view goes on once its connection is made anew, and a follower makes its consumer again;
an attempt whose live view was cut off for good is shown whole from its stored output. Against real servers."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
import structlog.testing
from nats.js import JetStreamContext

import plait_executor.live_output
from plait.adapters.connection import connect, on_reconnection
from plait.adapters.streams import ensure_streams
from plait.client.live_logs import CUT_OFF, OutputChunk
from plait.metrics.health import Health
from plait.protocol import subjects
from plait.protocol.headers import PLAIT_OUTPUT_END
from plait.sdk.hints import encode_value
from plait_executor.live_output import LiveOutput
from tests import output_workflows
from tests.helpers.dispatches import first_attempt
from tests.helpers.restartable_nats import RestartableNats
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 60.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RestartableNats]:
    nats_server = RestartableNats(tmp_path / "nats")
    nats_server.start()
    try:
        yield nats_server
    finally:
        nats_server.kill()


async def _restarted(server: RestartableNats) -> None:
    await anyio.to_thread.run_sync(server.kill)
    await anyio.to_thread.run_sync(server.start)


async def test_an_attempts_output_is_followed_live_after_nats_restarted(
    tmp_path: Path, server: RestartableNats, database_url: str
) -> None:
    flag = tmp_path / "flag"
    async with services_and_client(server.url, database_url) as client:
        handle = await client.launch(output_workflows.waits_for_flow, {"path": str(flag)})
        chunks: list[OutputChunk] = []
        with anyio.fail_after(DEADLINE):
            async for chunk in client.follow_logs(handle.id):
                chunks.append(chunk)
                if "waiting" in chunk.text:
                    await _restarted(server)  # the stream, and the follower's consumer, are gone with it
                    flag.touch()  # "released" is written only now
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded"
    assert "".join(chunk.text for chunk in chunks) == "waiting\nreleased\n"
    assert all(chunk.live for chunk in chunks) and chunks[-1].ended


async def test_an_attempt_whose_live_view_was_cut_off_is_shown_whole_from_its_stored_output(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An executor whose credential may not make streams (the operator does): the lost stream stays lost.
    monkeypatch.setattr(plait_executor.live_output, "authenticated", lambda js: True)
    flag = tmp_path / "flag"
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.waits_for_flow, {"path": str(flag)})
        chunks: list[OutputChunk] = []
        with anyio.fail_after(DEADLINE):
            async for chunk in client.follow_logs(handle.id):
                chunks.append(chunk)
                if chunk.text == "waiting\n":
                    await client.js.delete_stream(subjects.LIVE_OUTPUT_STREAM)  # as a restart loses it
                    flag.touch()
        state = await final_state(client, handle.id, timeout=DEADLINE)
        await ensure_streams(client.js)  # for the tests after this one, on the same server
    assert state.status == "succeeded"
    assert [(chunk.text, chunk.live, chunk.ended) for chunk in chunks] == [
        ("waiting\n", True, False),
        (CUT_OFF + "waiting\nreleased\n", False, True),
    ]


async def _view(js: JetStreamContext) -> list[tuple[bytes, bool]]:
    """The live output stream's chunks: (text, whether it ends its attempt)."""
    subscription = await js.pull_subscribe(f"{subjects.LIVE_OUTPUT_ROOT}.>", stream=subjects.LIVE_OUTPUT_STREAM)
    try:
        info = await js.stream_info(subjects.LIVE_OUTPUT_STREAM)
        messages = await subscription.fetch(info.state.messages, timeout=5) if info.state.messages else []
        return [(msg.data, PLAIT_OUTPUT_END in (msg.headers or {})) for msg in messages]
    finally:
        await subscription.unsubscribe()


async def _append(path: str, text: str) -> None:
    async with await anyio.open_file(path, "a") as file:
        await file.write(text)


async def test_a_paused_live_view_goes_on_with_a_line_once_its_connection_is_made_anew(
    tmp_path: Path, server: RestartableNats
) -> None:
    nc = await connect(server.url, "test-live-output")
    try:
        js = nc.jetstream(timeout=1.0)
        await ensure_streams(js)
        live = LiveOutput(js, tmp_path)
        reconnected = anyio.Event()
        on_reconnection(nc, reconnected.set)
        tick = anyio.create_task_group()
        async with tick:
            tick.start_soon(live.tick)  # as the executor runs it
            while not live._ticking:  # no event says the ticker took its first step
                await anyio.lowlevel.checkpoint()
            async with live.tailing(first_attempt(output_workflows.chatty.spec, {"tag": encode_value("t")})) as path:
                await _append(path, "before\n")
                with anyio.fail_after(DEADLINE):
                    while not await _view(js):  # noqa: ASYNC110  no event says the ticker published
                        await anyio.sleep(0.05)
                    await anyio.to_thread.run_sync(server.kill)
                    await _append(path, "while away\n")  # read by a poll while NATS is away: not shown live
                    [tail] = live._tails
                    while tail.paused_at is None:  # noqa: ASYNC110  set by the failing poll
                        await anyio.sleep(0.05)
                    await anyio.to_thread.run_sync(server.start)
                    await reconnected.wait()
                    await _append(path, "after\n")
            tick.cancel_scope.cancel()
        view = await _view(js)
    finally:
        await nc.close()
    interrupted = b"\n[plait: the live view was interrupted here; `plait logs` has the whole output]\n"
    # The stream was made anew (its chunks before the restart were lost with the server), then the view went on.
    assert view == [(interrupted, False), (b"after\n", False), (b"", True)] or view == [
        (interrupted, False),
        (b"after\n", True),
    ]


async def test_an_executor_that_may_not_make_the_missing_stream_is_degraded_until_it_is_back_then_goes_on(
    tmp_path: Path, server: RestartableNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A credential that may not manage streams: the operator makes the lost stream again.
    monkeypatch.setattr(plait_executor.live_output, "authenticated", lambda js: True)
    monkeypatch.setattr(plait_executor.live_output, "PROBE_SECONDS", 0.3)
    nc = await connect(server.url, "test-live-output")
    try:
        js = nc.jetstream(timeout=1.0)
        await ensure_streams(js)
        health = Health()
        health.serving()
        live = LiveOutput(js, tmp_path, partial(health.set_degraded, "live_output"))
        tick = anyio.create_task_group()
        with structlog.testing.capture_logs() as logs, anyio.fail_after(DEADLINE):
            async with tick:
                tick.start_soon(live.tick)
                while not live._ticking:  # no event says the ticker took its first step
                    await anyio.lowlevel.checkpoint()
                chatty = output_workflows.chatty.spec
                first, second = (first_attempt(chatty, {"tag": encode_value(tag)}, node=tag) for tag in "ab")
                async with live.tailing(first) as path, live.tailing(second) as other_path:
                    await _append(path, "before\n")
                    while not await _view(js):  # noqa: ASYNC110  no event says the ticker published
                        await anyio.sleep(0.05)
                    await js.delete_stream(subjects.LIVE_OUTPUT_STREAM)  # as a restart of a lone server loses it
                    await _append(path, "while gone\n")
                    await _append(other_path, "b while gone\n")
                    while any(tail.paused_at is None for tail in live._tails):  # noqa: ASYNC110  set by the polls
                        await anyio.sleep(0.05)
                    degraded = health.degraded()
                    assert health.readiness_problems() == []  # degraded, still ready: a restart would mend nothing
                    await ensure_streams(js)  # the operator's `plait streams ensure`
                    while health.degraded():  # noqa: ASYNC110  no event says the probe found it
                        await anyio.sleep(0.05)
                    await _append(path, "after\n")
                tick.cancel_scope.cancel()
        view = await _view(js)
    finally:
        await nc.close()
    assert degraded == [
        "live_output: stream PLAIT_LIVE_OUTPUT is missing (no live view of attempts): run `plait streams ensure` "
        "as the operator"
    ]
    events = [entry["event"] for entry in logs]
    assert events.count("live_output_stream_missing") == 1  # once for the outage, not for each attempt's publish
    assert events.count("live_output_stream_back") == 1
    assert "live_output_paused" not in events  # the two views paused for the missing stream: its one line says why
    interrupted = b"\n[plait: the live view was interrupted here; `plait logs` has the whole output]\n"
    # Both paused views went on in the stream made anew, each with its line; what was written meanwhile is not live.
    assert b"".join(text for text, _ in view).count(interrupted) == 2
    assert b"after\n" in b"".join(text for text, _ in view)
    assert sum(ended for _, ended in view) == 2
