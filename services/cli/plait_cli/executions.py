"""``plait executions list|show``: what the catalog knows about executions."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from plait.client import AsyncClient
from plait.settings import Settings
from plait_cli.progress import STATUS_STYLE
from plait_cli.stack import nats_for_command


async def _query(settings: Settings, what: str, request: dict[str, Any]) -> dict[str, Any]:
    async with nats_for_command(settings, services=("catalog",)) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            return await client.query(what, {**request, "min_sequence": await client.log_position()})


def _console() -> Console:
    """Rich's console; when output is piped, wide enough that rows are not folded."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _when(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


async def list_executions(settings: Settings, status: str | None, limit: int, as_json: bool) -> int:
    request = {"project": settings.project, "domain": settings.domain, "status": status, "limit": limit}
    answer = await _query(settings, "executions.list", request)
    if as_json:
        sys.stdout.write(msgspec.json.encode(answer).decode() + "\n")
        return 0
    table = Table(box=None)
    for column in ("execution", "workflow", "status", "launched", "duration", "nodes"):
        table.add_column(column)
    for row in answer["executions"]:
        table.add_row(
            row["execution_id"],
            row["workflow"],
            f"[{STATUS_STYLE.get(row['status'], '')}]{row['status']}[/]",
            _when(row["launched_at"]),
            _seconds(row["duration_seconds"]),
            f"{row['nodes_succeeded']}/{row['nodes_total']}",
        )
    _console().print(table)
    return 0


async def show_execution(settings: Settings, execution_id: str, as_json: bool) -> int:
    request = {"project": settings.project, "domain": settings.domain, "execution_id": execution_id}
    answer = await _query(settings, "executions.show", request)
    execution = answer["execution"]
    if as_json:
        sys.stdout.write(msgspec.json.encode(execution).decode() + "\n")
        return 0
    console = _console()
    console.print(
        f"[bold]execution[/] {execution['execution_id']}  {execution['workflow']}@{execution['version'][:12]}"
    )
    console.print(
        f"status: [{STATUS_STYLE.get(execution['status'], '')}]{execution['status']}[/]   "
        f"launched: {_when(execution['launched_at'])}   duration: {_seconds(execution['duration_seconds'])}"
    )
    console.print(f"inputs:  {msgspec.json.encode(execution['inputs']).decode()}", highlight=False, soft_wrap=True)
    if execution.get("outputs") is not None:
        console.print(f"outputs: {msgspec.json.encode(execution['outputs']).decode()}", highlight=False, soft_wrap=True)
    if execution.get("error"):
        error = execution["error"]
        console.print(f"[red]failed at node {execution.get('failed_node')}[/]: {error.get('message')}", highlight=False)
    table = Table(box=None)
    for column in ("node", "task", "status", "attempts", "started", "time", "worker"):
        table.add_column(column)
    for node in execution["nodes"]:
        attempts = node["attempts"]
        last = attempts[-1] if attempts else {}
        took = None
        if node.get("started_at") and node.get("finished_at"):
            took = (
                datetime.fromisoformat(node["finished_at"]) - datetime.fromisoformat(node["started_at"])
            ).total_seconds()
        table.add_row(
            node["node"],
            node["task"].rsplit(".", 1)[-1],
            f"[{STATUS_STYLE.get(node['status'], '')}]{node['status']}[/]",
            str(len(attempts)),
            _when(node.get("started_at")),
            _seconds(took),
            last.get("worker", ""),
        )
    console.print(table)
    return 0
