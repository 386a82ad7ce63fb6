"""SIGTERM to every service mid-run: each stops cleanly (exit 0), and once restarted every execution ends and the
catalog equals a replay of the log."""

from __future__ import annotations

import pytest

from tests import workflows
from tests.faults.harness import (
    FaultReport,
    audit_log,
    connected,
    in_thread,
    launch_many,
    service_env,
    start_service,
    stopped_at_exit,
    wait_all,
)

pytestmark = pytest.mark.faults

EXECUTIONS = 40
SERVICES = ("scheduler", "executor", "catalog")


async def test_sigterm_of_every_service_mid_run_loses_nothing(nats_url: str, database_url: str) -> None:
    env = service_env(nats_url, PLAIT_DATABASE_URL=database_url)
    processes = [start_service(service, env) for service in SERVICES]
    report = FaultReport("SIGTERM of every service", executions=EXECUTIONS)
    with stopped_at_exit(processes):
        async with connected(nats_url) as client:
            ids = [await client.launch(workflows.paused, {"seconds": 2.0}) for _ in range(4)]  # running at SIGTERM
            ids += await launch_many(client, EXECUTIONS - len(ids), seed=3)
            for index, process in enumerate(list(processes)):
                assert await in_thread(process.terminate) == 0, process.events[-10:]
                report.faults += 1
                processes[index] = await in_thread(start_service, process.service, env)
            await wait_all(client, ids, timeout=90, report=report)
            report.problems = await audit_log(client, catalog=True)
    report.check()
