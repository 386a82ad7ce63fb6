"""SIGTERM to every service mid-run: each stops cleanly (exit 0), and once restarted every execution ends and the
catalog equals a replay of the log."""

from __future__ import annotations

import pytest

from tests import workflows
from tests.faults import harness

pytestmark = pytest.mark.faults

EXECUTIONS = 40
SERVICES = ("scheduler", "executor", "catalog")


async def test_sigterm_of_every_service_mid_run_loses_nothing(nats_url: str, database_url: str) -> None:
    env = harness.service_env(nats_url, PLAIT_DATABASE_URL=database_url)
    processes = [harness.start_service(service, env) for service in SERVICES]
    report = harness.FaultReport("SIGTERM of every service", executions=EXECUTIONS)
    with harness.stopped_at_exit(processes):
        async with harness.connected(nats_url) as client:
            ids = [(await client.launch(workflows.paused, {"seconds": 2.0})).id for _ in range(4)]  # running at SIGTERM
            ids += await harness.launch_many(client, EXECUTIONS - len(ids), seed=3)
            for index, process in enumerate(list(processes)):
                assert await harness.in_thread(process.terminate) == 0, process.events[-10:]
                report.faults += 1
                processes[index] = await harness.in_thread(harness.start_service, process.service, env)
            await harness.wait_all(client, ids, timeout=90, report=report)
            report.problems = await harness.audit_log(client, catalog=True)
    report.check()
