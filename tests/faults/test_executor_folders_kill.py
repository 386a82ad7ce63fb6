"""An executor killed with SIGKILL cannot remove its private folders (code bundles, live output, its workers'
temporary files); the next executor started on the host removes them, and leaves a live executor's alone. The
killed executor's attempt runs again elsewhere."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests import scratch_workflows
from tests.faults import harness

pytestmark = pytest.mark.faults


async def test_the_next_executor_removes_what_a_killed_one_left(nats_url: str, tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = harness.service_env(nats_url, TMPDIR=str(temporary))
    processes = [harness.start_service("scheduler", env)]
    report = harness.FaultReport("executor killed, its folders left on the host (SIGKILL)", executions=1)
    with harness.stopped_at_exit(processes):
        victim = harness.start_service("executor", {**env, "PLAIT_REPLICA": "victim"})
        processes.append(victim)
        victims_folder = Path(str(victim.wait_for_event("executor_started")["folder"]))
        note = str(tmp_path / "held")
        async with harness.connected(nats_url) as client:
            handle = await client.launch(scratch_workflows.holds_temporary_files, {"note": note, "seconds": 3.0})
            held = Path(await scratch_workflows.until_noted(note))
            assert held.is_relative_to(victims_folder) and await anyio.Path(held).is_dir(), "the task's temporary files"
            await harness.in_thread(victim.kill)
            report.faults += 1
            assert await anyio.Path(victims_folder).is_dir(), "a killed executor removes nothing"

            bystander = harness.start_service("executor", {**env, "PLAIT_REPLICA": "bystander"})
            processes.append(bystander)
            bystanders_folder = Path(str(bystander.wait_for_event("executor_started")["folder"]))
            assert bystander.wait_for_event("abandoned_folders_removed")["folders"] == [str(victims_folder)]
            assert not await anyio.Path(victims_folder).exists()
            newcomer = harness.start_service("executor", {**env, "PLAIT_REPLICA": "newcomer"})
            processes.append(newcomer)
            newcomers_folder = Path(str(newcomer.wait_for_event("executor_started")["folder"]))
            assert await anyio.Path(bystanders_folder).is_dir(), "a live executor's folder is kept"
            left = sorted([Path(p) async for p in anyio.Path(temporary).glob("plait-executor-*")])
            assert left == sorted([bystanders_folder, newcomers_folder])

            await harness.wait_all(client, [handle.id], timeout=90, report=report)
            report.problems = await harness.audit_log(client)
    report.check()
