"""``plait executions list|show``: what the catalog knows about executions."""

from __future__ import annotations

import msgspec
from rich.table import Table

from plait.core.state import ExecutionStatus
from plait.protocol.executions import ExecutionList, NodeView
from plait.settings import Settings
from plait_cli.catalog_session import catalog_client, console, print_json, when
from plait_cli.progress import STATUS_STYLE


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


async def list_executions(settings: Settings, status: ExecutionStatus | None, limit: int, as_json: bool) -> int:
    async with catalog_client(settings) as (client, position):
        executions = await client.list_executions(status=status, limit=limit, min_sequence=position)
    if as_json:
        print_json(ExecutionList(executions=executions))
        return 0
    table = Table(box=None)
    for column in ("execution", "workflow", "status", "launched", "duration", "nodes"):
        table.add_column(column)
    for row in executions:
        table.add_row(
            row.execution_id,
            row.workflow,
            f"[{STATUS_STYLE.get(row.status, '')}]{row.status}[/]",
            when(row.launched_at),
            _seconds(row.duration_seconds),
            f"{row.nodes_succeeded}/{row.nodes_total}",
        )
    console().print(table)
    return 0


async def show_execution(settings: Settings, execution_id: str, as_json: bool) -> int:
    async with catalog_client(settings) as (client, position):
        execution = await client.show_execution(execution_id, min_sequence=position)
    if as_json:
        print_json(execution)
        return 0
    out = console()
    out.print(f"[bold]execution[/] {execution.execution_id}  {execution.workflow}@{execution.version[:12]}")
    out.print(
        f"status: [{STATUS_STYLE.get(execution.status, '')}]{execution.status}[/]   "
        f"launched: {when(execution.launched_at)}   duration: {_seconds(execution.duration_seconds)}"
    )
    out.print(f"inputs:  {msgspec.json.encode(execution.inputs).decode()}", highlight=False, soft_wrap=True)
    if execution.outputs is not None:
        out.print(f"outputs: {msgspec.json.encode(execution.outputs).decode()}", highlight=False, soft_wrap=True)
    if execution.error:
        message = execution.error.get("message")
        where = f" at node {execution.failed_node}" if execution.failed_node else ""  # a workflow timeout: none
        out.print(f"[red]failed{where}[/]: {message}", highlight=False)
    table = Table(box=None)
    for column in ("node", "task", "status", "attempts", "started", "time", "worker"):
        table.add_column(column)
    for node in execution.nodes:
        took = None
        if node.started_at and node.finished_at:
            took = (node.finished_at - node.started_at).total_seconds()
        table.add_row(
            node.node,
            node.task.rsplit(".", 1)[-1] if node.kind == "task" else f"({node.kind})",
            f"[{STATUS_STYLE.get(node.status, '')}]{_status_text(node)}[/]",
            str(len(node.attempts)),
            when(node.started_at),
            _seconds(took),
            node.attempts[-1].worker if node.attempts else "",
        )
    out.print(table)
    return 0


def _status_text(node: NodeView) -> str:
    """A node's status; for an open gate, what it waits for and until when."""
    return node.waiting_for if node.status == "waiting" and node.waiting_for else node.status
