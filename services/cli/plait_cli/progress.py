"""The live view of a running execution: a line per node for small DAGs, counts per task for large ones."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from plait.core.branches import node_label
from plait.core.state import Execution, NodeState

PER_NODE_LIMIT = 30
MAP_BAR_WIDTH = 20

STATUS_STYLE = {
    "waiting": "dim",
    "cache_lookup": "blue",
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "aborted": "magenta",
    "skipped": "dim magenta",
    "recovered": "green",
    "stopped": "magenta",
}


def _seconds(node: NodeState, now: datetime) -> str:
    if node.map_size > 0 and node.map_started_at is not None:
        return f"{_map_seconds(node, node.map_started_at, now):.2f}s"
    if not node.attempts or node.attempts[-1].started_at is None:
        return ""
    attempt = node.attempts[-1]
    assert attempt.started_at is not None  # noqa: S101  an invariant of this code, not a check of input
    end = attempt.finished_at or now
    return f"{(end - attempt.started_at).total_seconds():.2f}s"


def _status(node: NodeState) -> Text:
    if node.cached_from:
        return Text("succeeded (cached)", STATUS_STYLE["succeeded"])
    if node.status == "queued" and node.retry_at is not None:
        return Text(f"retry at {node.retry_at:%H:%M:%S}", STATUS_STYLE["queued"])
    if node.status == "cache_lookup" and node.cache_holder:
        return Text(f"waiting for {node.cache_holder}", STATUS_STYLE["cache_lookup"])
    return Text(node.status, STATUS_STYLE[node.status])


def _map_seconds(node: NodeState, first: datetime, now: datetime) -> float:
    """How long a map node has run: from its first items queued to its last item finished, or to now."""
    if node.status in ("succeeded", "failed"):
        return ((node.map_ended_at or first) - first).total_seconds()
    return max((now - first).total_seconds(), 0.0)


def _attempts(node: NodeState, now: datetime) -> RenderableType:
    """The attempts of a node; of a map node, its items: a bar of finished/all, how many failed, and the rate."""
    if node.map_size < 0:
        return str(len(node.attempts) or "")
    failed = f", {node.map_failed} failed" if node.map_failed else ""
    counts = f"{node.map_finished:,}/{node.map_size:,} items{failed}"
    if node.map_size == 0 or node.map_started_at is None:
        return counts
    seconds = _map_seconds(node, node.map_started_at, now)
    rate = f", {node.map_finished / seconds:,.1f}/s" if seconds > 0 and node.map_finished else ""
    bar = ProgressBar(total=node.map_size, completed=node.map_finished, width=MAP_BAR_WIDTH)
    return Columns([bar, Text(counts + rate)], padding=(0, 1))


def render(state: Execution, now: datetime | None = None) -> RenderableType:
    now = now or datetime.now(UTC)
    elapsed = ((state.finished_at or now) - (state.launched_at or now)).total_seconds()
    done = sum(1 for n in state.nodes.values() if n.status == "succeeded")
    header = Text.assemble(
        ("execution ", "bold"),
        (state.execution_id, "bold cyan"),
        f"  {state.workflow.name}  ",
        (state.status, STATUS_STYLE.get(state.status, "")),
        f"  {done}/{len(state.nodes)} nodes  {elapsed:.2f}s",
    )
    table = Table(box=None, pad_edge=False, show_edge=False)
    if len(state.nodes) <= PER_NODE_LIMIT:
        for column in ("node", "task", "status", "attempt", "time"):
            table.add_column(column)
        for node in state.nodes.values():
            table.add_row(
                node.id,
                node_label(node.spec),
                _status(node),
                _attempts(node, now),
                _seconds(node, now),
            )
    else:
        statuses = tuple(STATUS_STYLE)
        table.add_column("task")
        for status in statuses:
            table.add_column(status, justify="right", style=STATUS_STYLE[status])
        by_task: dict[str, Counter[str]] = {}
        for node in state.nodes.values():
            by_task.setdefault(node_label(node.spec), Counter())[node.status] += 1
        for task_name, counts in by_task.items():
            table.add_row(task_name, *(str(counts[s]) for s in statuses))
    return Group(header, table)


def print_transition(console: Console, before: dict[str, str], state: Execution) -> None:
    """For a terminal that is not interactive: one line per node that changed status."""
    if len(state.nodes) > PER_NODE_LIMIT:
        return
    for node in state.nodes.values():
        shown = _status(node).plain
        if node.map_size > 0 and node.status == "running":  # a line per tenth of the items, not per item
            shown = f"running, {node.map_finished * 10 // node.map_size * 10}% of {node.map_size:,} items done"
        if before.get(node.id) != shown and node.status in ("running", "succeeded", "failed", "aborted"):
            console.print(f"{node.id}: {shown}", highlight=False)
        before[node.id] = shown
