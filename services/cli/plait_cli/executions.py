"""``plait executions list|show|follow``: what the catalog knows about executions, and following one live."""

from __future__ import annotations

from collections import Counter

import msgspec
from rich.console import Console
from rich.table import Table

from plait.adapters.event_store import EventStore
from plait.adapters.executors import live_executors
from plait.adapters.nats_errors import as_plait_errors
from plait.client import AsyncClient
from plait.core.clusters import cluster_of_task
from plait.core.state import Execution, ExecutionStatus
from plait.protocol import subjects
from plait.protocol.executions import ExecutionDetail, ExecutionList, NodeView
from plait.settings import Settings
from plait_cli.catalog_session import catalog_client, console, print_json, print_rows, when
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
    print_rows(table, f"no {status + ' ' if status else ''}executions in {settings.project}/{settings.domain}")
    return 0


async def show_execution(settings: Settings, execution_id: str, as_json: bool) -> int:
    async with catalog_client(settings) as (client, position):
        execution = await client.show_execution(execution_id, min_sequence=position)
        queued = [node.node for node in execution.nodes if node.status == "queued"]
        state = await _logged_state(client, execution_id)
        waiting = await _waiting(client, state, queued)
        family = _family(state)
    if as_json:
        shown = msgspec.to_builtins(execution)
        extra: dict[str, object] = {"waiting_for_clusters": waiting} if waiting else {}
        if state is not None and state.selected_clusters:
            extra["selected_clusters"] = state.selected_clusters
        print_json({**shown, **extra, **msgspec.to_builtins(family)} if family.linked else {**shown, **extra})
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
    if family.parent_execution:
        out.print(f"child of execution {family.parent_execution} (node '{family.parent_node}')", highlight=False)
    for node_id, child in family.child_executions.items():
        out.print(f"node {node_id} launched child execution {child}", highlight=False)
    for selector, cluster in sorted((state.selected_clusters if state is not None else {}).items()):
        out.print(f"cluster selector {selector} chose cluster [bold]{cluster}[/]", highlight=False)
    table = Table(box=None)
    for column in ("node", "task", "status", "attempts", "started", "time", "worker / note"):
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
            _node_note(node),
        )
    out.print(table)
    for wait in waiting:
        live = (
            f"{wait.live_executors} executor(s) of it live"
            if wait.live_executors
            else "[red]no executor of it is live[/]"
        )
        out.print(f"node {wait.node} waits for cluster [bold]{wait.cluster}[/]: {live}", highlight=False)
    return 0


class Family(msgspec.Struct, frozen=True):
    """An execution's parent (when a node of another launched it) and the child executions its nodes launched, as
    its log records them."""

    parent_execution: str = ""
    parent_node: str = ""
    child_executions: dict[str, str] = {}

    @property
    def linked(self) -> bool:
        return bool(self.parent_execution or self.child_executions)


async def _logged_state(client: AsyncClient, execution_id: str) -> Execution | None:
    """The execution's state as its log has it: what the catalog's rows do not hold (clusters, parent and children)."""
    subject = subjects.execution_subject(client.project, client.domain, execution_id)
    with as_plait_errors(f"reading execution {execution_id}"):
        return await EventStore(client.js).load(subject)


def _family(state: Execution | None) -> Family:
    if state is None:
        return Family()
    children = {node.id: node.child_execution for node in state.nodes.values() if node.child_execution}
    return Family(parent_execution=state.parent_execution, parent_node=state.parent_node, child_executions=children)


async def follow_execution(settings: Settings, execution_id: str, as_json: bool) -> int:
    """Attach the live view to an execution launched earlier (or elsewhere) until it ends; exit code 1 unless it
    succeeded. Without a running stack, the embedded one is started, and the execution goes on in it."""
    out, err = Console(), Console(stderr=True)
    async with nats_for_command(settings, report=None if as_json else print_steps(err)) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            await client.records(execution_id)  # NotFound, naming it, rather than waiting for it to appear
            final = await follow_until_ended(client, execution_id, err)
    return report(final, as_json, out, err)


class Waiting(msgspec.Struct, frozen=True):
    """A node whose attempt is queued, the cluster it waits for, and how many executors of it are live."""

    node: str
    cluster: str
    live_executors: int


async def _waiting(client: AsyncClient, state: Execution | None, queued_nodes: list[str]) -> list[Waiting]:
    """Where the queued nodes wait: their cluster, as the log decided it, and its live executors."""
    if not queued_nodes or state is None:
        return []
    with as_plait_errors(f"reading where execution {state.execution_id} waits"):
        live = Counter(e.cluster for e in await live_executors(client.js))
    waiting = []
    for node_id in queued_nodes:
        node = state.nodes.get(node_id)
        if node is None or state.terminal or node.status != "queued":
            continue
        cluster = cluster_of_task(state, node.task) or "(the scheduler's default)"
        waiting.append(Waiting(node=node_id, cluster=cluster, live_executors=live[cluster]))
    return waiting


def _status_text(node: NodeView) -> str:
    """A node's status; for an open gate, what it waits for and until when."""
    return node.waiting_for if node.status == "waiting" and node.waiting_for else node.status
