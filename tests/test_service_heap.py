"""A service process's garbage collector, tuned once the service has started (plait_cli.heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import anyio
import anyio.abc
import pytest

from plait_cli import serve
from plait_cli.heap import OLDER_THRESHOLDS, YOUNGEST_THRESHOLD, settle_heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_settling_freezes_what_is_alive_and_collects_the_youngest_generation_less_often() -> None:
    gc.unfreeze()
    before = [["made before"]]
    settle_heap()
    after = [["made after"]]
    tracked = {id(o) for o in gc.get_objects()}  # the frozen objects are in no generation the collector scans
    assert id(before) not in tracked
    assert id(after) in tracked
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNGEST_THRESHOLD, *OLDER_THRESHOLDS)


async def test_serve_settles_the_heap_once_the_service_has_started(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    settled = anyio.Event()

    def settle() -> None:
        events.append("settled")
        settled.set()

    async def run(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        events.append("starting")
        task_status.started()
        events.append("started")
        await anyio.sleep_forever()

    monkeypatch.setattr(serve, "settle_heap", settle)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve.serve, run)
            await settled.wait()
            tg.cancel_scope.cancel()
    assert events == ["starting", "started", "settled"]
