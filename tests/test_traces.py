"""One trace per execution, across the processes of the embedded stack: the client that launched it, the scheduler
that decided it, the executor and worker that ran its attempts, and the catalog that projected it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from plait.client import AsyncClient
from plait.telemetry import span, trace_id_of
from tests import audit_workflows
from tests.helpers.embedded_processes import kill_all, plait, wait_until_gone
from tests.helpers.plait_command import plait_command_async
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def run_traced(
    tmp_path: Path, *args: str, extra_env: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], Path]:
    """Run ``plait run ARGS`` on a fresh home with every process appending its spans to one file; the spans."""
    home, spans = tmp_path / "home", tmp_path / "spans.jsonl"
    env = {
        "PLAIT_TRACES_FILE": str(spans),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "",
        **(extra_env or {}),
    }
    run = plait(["run", *args], home, env)
    try:
        out, err = run.communicate(timeout=120)
    finally:
        kill_all(wait_until_gone(home, timeout=10))
        run.kill()
    assert run.returncode == 0, err
    assert out == 'result = "TRACETRACE"\n'
    return [json.loads(line) for line in spans.read_text().splitlines()], home


def test_an_execution_is_one_trace_across_client_scheduler_executor_worker_and_catalog(tmp_path: Path) -> None:
    spans, home = run_traced(tmp_path, "tests/trace_workflows.py:traced")
    by_id = {span["span_id"]: span for span in spans}
    assert {span["trace_id"] for span in spans} == {spans[0]["trace_id"]}, "one trace"
    processes = Counter(span["process"] for span in spans)
    assert set(processes) == {"plait-client", "plait-scheduler", "plait-executor", "plait-worker", "plait-catalog"}
    names = Counter(span["name"] for span in spans)
    assert names["plait.launch"] == 1
    assert names["plait.executor.attempt"] == 2 and names["plait.worker.task"] == 2
    assert names["plait.scheduler.dispatch"] == 2
    assert names["plait.scheduler.decide"] >= 3  # the launch, each result (and started, when sent)
    # One tree: the launch is the only root, every other span's parent is in the file.
    [root] = [span for span in spans if span["parent_span_id"] is None]
    assert root["name"] == "plait.launch" and root["process"] == "plait-client"
    assert all(span["parent_span_id"] in by_id for span in spans if span is not root)

    def chain(span: dict[str, Any]) -> list[str]:
        names = [span["name"]]
        while span["parent_span_id"] is not None:
            span = by_id[span["parent_span_id"]]
            names.append(span["name"])
        return names

    [user] = [span for span in spans if span["name"] == "user.work"]
    assert user["process"] == "plait-worker" and user["attributes"] == {"user.length": 5}
    assert chain(user)[:5] == [
        "user.work",
        "plait.worker.task",
        "plait.executor.attempt",
        "plait.scheduler.dispatch",
        "plait.scheduler.decide",
    ]
    assert chain(user)[-1] == "plait.launch"
    # Reports go back into the trace: a decision made on an executor's report is a child of its attempt span.
    assert any(
        span["name"] == "plait.scheduler.decide" and by_id[span["parent_span_id"]]["name"] == "plait.executor.attempt"
        for span in spans
    )
    projected = [span for span in spans if span["name"] == "plait.catalog.project"]
    assert projected and all(by_id[s["parent_span_id"]]["name"] == "plait.scheduler.decide" for s in projected)

    # The services' log lines made within a span carry its ids, beside the execution's, node's and attempt's.
    lines = [
        json.loads(line) for line in (home / "logs" / "plait.log").read_text().splitlines() if line.startswith("{")
    ]
    started = [line for line in lines if line.get("event") == "attempt_started"]
    assert len(started) == 2
    for line in started:
        assert line["trace_id"] == root["trace_id"] and by_id[line["span_id"]]["name"] == "plait.executor.attempt"
        assert line["execution"] == root["attributes"]["plait.execution_id"] and line["node"] and line["attempt"]


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def test_the_log_records_the_trace_a_launch_began_so_a_replay_names_it(
    client: AsyncClient, nats_url: str
) -> None:
    """Launched within a caller's span (here one received: this process records none), the execution's log keeps its
    context; ``plait replay`` names the trace. One launched outside any span records none."""
    with span("caller", parent=CALLER):
        traced = (await client.launch(audit_workflows.doubled, {"x": 5})).id
    untraced = (await client.launch(audit_workflows.doubled, {"x": 6})).id
    env = {"PLAIT_NATS_URL": nats_url}
    for execution_id in (traced, untraced):
        await final_state(client, execution_id, timeout=60)
    replayed = await plait_command_async(["replay", traced, "--json"], env)
    assert trace_id_of(json.loads(replayed.stdout)["traceparent"]) == trace_id_of(CALLER)
    shown = await plait_command_async(["replay", traced], env)
    assert f"trace: {trace_id_of(CALLER)}" in shown.stdout
    assert json.loads((await plait_command_async(["replay", untraced, "--json"], env)).stdout)["traceparent"] == ""
    assert "trace:" not in (await plait_command_async(["replay", untraced], env)).stdout
