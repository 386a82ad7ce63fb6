"""The executor's one task for ``started`` reports: an attempt ended before its report was due sends none; one
still running gets its report sent, and waits for it to be stored."""

from __future__ import annotations

import anyio

from plait_executor.started_reports import Report, StartedReports


async def test_only_attempts_still_running_when_due_report_started() -> None:
    reports = StartedReports(after=0.01)
    sent: list[str] = []

    def report(name: str) -> Report:
        async def send(on_wire: anyio.Event) -> None:
            sent.append(name)
            on_wire.set()

        return send

    async with anyio.create_task_group() as running:
        running.start_soon(reports.run)
        await anyio.wait_all_tasks_blocked()
        assert reports.running
        quick = reports.add(report("quick"))
        assert reports.ended(quick)  # ended before it was due: never sent
        assert quick.sent.is_set() and quick.stored.is_set()
        slow = reports.add(report("slow"))
        with anyio.fail_after(10):
            await slow.stored.wait()
        assert slow.claimed and slow.sent.is_set()
        assert not reports.ended(slow)  # sent already
        running.cancel_scope.cancel()
    assert sent == ["slow"]
    assert not reports.running
