"""``plait executions list|show|follow``: what the catalog knows about executions, and following one live."""

from __future__ import annotations

import msgspec
from rich.console import Console
from rich.table import Table

from plait.client import AsyncClient
from plait.core.state import ExecutionStatus
from plait.protocol.executions import ExecutionDetail, ExecutionList, NodeView
from plait.settings import Settings
from plait_cli.catalog_session import catalog_client, console, print_json, when
from plait_cli.follow import follow_until_ended, report
from plait_cli.progress import STATUS_STYLE
from plait_cli.stack import nats_for_command, print_steps


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


def execution_links(execution: ExecutionDetail) -> list[str]:
    """Who aborted it, and the executions it ran again or that ran it again (relaunch, recovery)."""
    lines = []
    if execution.status == "aborted":
        by = f" by {execution.aborted_by}" if execution.aborted_by else ""
        lines.append(f"aborted{by}: {execution.abort_reason}")
    if execution.relaunch_of:
        lines.append(f"relaunch of: {execution.relaunch_of}")
    if execution.recovered_from:
        lines.append(f"recovered from: {execution.recovered_from}")
    if execution.relaunched_as:
        lines.append(f"run again as: {', '.join(execution.relaunched_as)}")
    return lines


def _node_note(node: NodeView) -> str:
    if node.recovered_from:
        return f"from {node.recovered_from}"
    if node.skip_reason:
        return node.skip_reason
    return node.attempts[-1].worker if node.attempts else ""


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
    for line in execution_links(execution):
        out.print(line, highlight=False)
    table = Table(box=None)
    for column in ("node", "task", "status", "attempts", "started", "time", "worker / note"):
        table.add_column(column)
    for node in execution.nodes:
        took = None
        if node.started_at and node.finished_at:
            took = (node.finished_at - node.started_at).total_seconds()
        table.add_row(
            node.node,
            node.task.rsplit(".", 1)[-1],
            f"[{STATUS_STYLE.get(node.status, '')}]{node.status}[/]",
            str(len(node.attempts)),
            when(node.started_at),
            _seconds(took),
            _node_note(node),
        )
    out.print(table)
    return 0


async def follow_execution(settings: Settings, execution_id: str, as_json: bool) -> int:
    """Attach the live view to an execution launched earlier (or elsewhere) until it ends; exit code 1 unless it
    succeeded. Without a running stack, the embedded one is started, and the execution goes on in it."""
    out, err = Console(), Console(stderr=True)
    async with nats_for_command(settings, report=None if as_json else print_steps(err)) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            await client.records(execution_id)  # NotFound, naming it, rather than waiting for it to appear
            final = await follow_until_ended(client, execution_id, err)
    return report(final, as_json, out, err)
