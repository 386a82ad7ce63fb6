"""Each service's /metrics, /livez and /readyz, read over HTTP from real service processes: the dispatch queue's
depth grows while no executor runs and drains once one starts; a catalog is not ready while PostgreSQL is down."""

from __future__ import annotations

import re

import anyio
import anyio.to_thread

from plait.client import AsyncClient
from plait_cli.embedded import PostgresServer, create_database
from tests import workflows
from tests.helpers.metrics_scrape import (
    free_port,
    get,
    scraped_until,
    status_until,
    value,
)
from tests.helpers.plait_command import plait_command_async
from tests.helpers.postgres_restarts import restarted_on_the_same_port
from tests.helpers.processes import ServiceProcess

QUEUED = 4
DEPTH = "plait_dispatch_queue_messages"
EXECUTOR_CONSUMER = {"stream": "PLAIT_DISPATCH", "consumer": "executor-local-default"}


def started_with_endpoint(service: str, env: dict[str, str]) -> tuple[ServiceProcess, str]:
    """``plait <service>`` serving its endpoint on a free loopback port; returns it and the endpoint's URL."""
    process = ServiceProcess(service, {**env, "PLAIT_METRICS_PORT": str(free_port())})
    url = str(process.wait_for_event("metrics_serving", timeout=60)["url"])
    process.wait_for_event(f"{service}_started", timeout=60)
    return process, url


async def test_the_dispatch_queue_grows_without_an_executor_and_drains_when_one_starts(nats_url: str) -> None:
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_CONCURRENCY": "2"}
    scheduler, scheduler_url = started_with_endpoint("scheduler", env)
    processes = [scheduler]
    try:
        assert await status_until(f"{scheduler_url}/readyz", 200) == "ok\n"
        async with await AsyncClient.connect(nats_url) as client:
            await client.register(workflows.add_two)
            ids = [(await client.launch(workflows.add_two, {"a": i, "b": 1}, timeout=30)).id for i in range(QUEUED)]
            queued = await scraped_until(
                scheduler_url,
                lambda s: value(s, DEPTH, cluster="local", queue="default") == QUEUED,
                f"{QUEUED} dispatch records waiting",
            )
            assert value(queued, "plait_decisions_total") >= QUEUED
            assert value(queued, "plait_commands_total", kind="launch") == QUEUED
            replica = _replica(queued)
            assert value(queued, "plait_build_info", service="scheduler", version="0.1.0", replica=replica) == 1
            waited = await scraped_until(
                scheduler_url,
                lambda s: value(s, "plait_dispatch_queue_oldest_age_seconds", cluster="local", queue="default") >= 1,
                "the oldest dispatch record ageing",
            )
            assert value(waited, DEPTH, cluster="local", queue="default") == QUEUED  # still nobody to run them
            shown = await plait_command_async(
                ["top", "--once"],
                {"PLAIT_NATS_URL": nats_url, "COLUMNS": "200"},  # the scheduler announced its URL
            )
            assert shown.returncode == 0, shown.stderr
            assert re.search(rf"^\s*local\s+default\s+{QUEUED}\s+\d+s\s+0\s*$", shown.stdout, re.M), shown.stdout
            assert re.search(rf"^\s*scheduler\s+{re.escape(replica)}\s+0\.1\.0\s+yes\s", shown.stdout, re.M), (
                shown.stdout
            )

            executor, executor_url = started_with_endpoint("executor", env)
            processes.append(executor)
            with anyio.fail_after(60):
                for execution_id in ids:
                    assert (await client.wait(execution_id, timeout=60)).status == "succeeded"
            executor_consumer = ("plait_consumer_pending_messages", frozenset(EXECUTOR_CONSUMER.items()))
            await scraped_until(
                scheduler_url,
                lambda s: value(s, DEPTH, cluster="local", queue="default") == 0 and s.get(executor_consumer) == 0,
                "the queue drained by the executor's consumer",
            )
            ran = await scraped_until(
                executor_url,
                lambda s: (
                    value(s, "plait_attempt_duration_seconds_count", task=_task_name(s), outcome="succeeded") == QUEUED
                ),
                f"{QUEUED} attempts succeeded",
            )
            started = value(ran, "plait_attempt_start_delay_seconds_count", cluster="local", queue="default")
            assert started == QUEUED
            # Each waited for the executor, at least the second the oldest was seen ageing above.
            quick = value(ran, "plait_attempt_start_delay_seconds_bucket", cluster="local", queue="default", le="0.5")
            assert quick == 0
    finally:
        for process in processes:
            process.stop()


async def test_a_catalog_is_not_ready_while_postgres_is_down(nats_url: str, private_postgres: PostgresServer) -> None:
    database_url = create_database(private_postgres.url, "plait_readiness")
    catalog, url = started_with_endpoint("catalog", {"PLAIT_NATS_URL": nats_url, "PLAIT_DATABASE_URL": database_url})
    server = private_postgres
    try:
        assert await status_until(f"{url}/readyz", 200) == "ok\n"
        await anyio.to_thread.run_sync(server.stop)
        reason = await status_until(f"{url}/readyz", 503)
        assert "postgresql: unreachable" in reason
        assert (await anyio.to_thread.run_sync(get, f"{url}/livez"))[0] == 200  # alive: not to be restarted
        server = await anyio.to_thread.run_sync(restarted_on_the_same_port, server)
        assert await status_until(f"{url}/readyz", 200) == "ok\n"
        samples = await scraped_until(url, lambda s: ("plait_projection_lag_messages", frozenset()) in s, "the lag")
        assert value(samples, "plait_projection_lag_messages") >= 0
    finally:
        catalog.stop()
        server.stop()


def _replica(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> str:
    [labels] = [dict(labels) for name, labels in samples if name == "plait_build_info"]
    return labels["replica"]


def _task_name(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> str:
    names = {dict(labels)["task"] for name, labels in samples if name == "plait_attempt_duration_seconds_count"}
    return names.pop() if len(names) == 1 else ""
