"""``plait clusters list``: every cluster known, its live executors and its queued attempts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from plait.adapters.clusters import ClusterView, cluster_overview
from plait.adapters.nats_errors import as_plait_errors
from plait.settings import Settings
from plait_cli.catalog_session import console, print_json, when
from plait_cli.operator_session import operator_nats


def summary(view: ClusterView) -> dict[str, Any]:
    """A cluster as ``-o json`` writes it."""
    return {
        "cluster": view.cluster,
        "live": bool(view.executors),
        "queued": view.queued,
        "executors": view.executors,
        "queues": view.queues,
    }


async def list_clusters(settings: Settings, as_json: bool) -> int:
    async with operator_nats(settings, "plait-clusters") as nc:
        with as_plait_errors("listing clusters"):
            views = await cluster_overview(nc.jetstream())
    if as_json:
        print_json({"clusters": [summary(view) for view in views]})
        return 0
    out = console()
    if not views:
        out.print("no cluster: no executor is live and nothing is queued")
        return 0
    table = Table(box=None)
    for column in ("cluster", "executors", "queued", "waiting", "held", "queues"):
        table.add_column(column)
    for view in views:
        waiting = sum(max(q.waiting, 0) for q in view.queues)
        held = sum(max(q.held, 0) for q in view.queues)
        live = str(len(view.executors)) if view.executors else "[red]0 (none live)[/]"
        queues = ", ".join(f"{q.queue}:{q.queued}" for q in view.queues)
        table.add_row(view.cluster, live, str(view.queued), str(waiting), str(held), queues)
    out.print(table)
    executors = [e for view in views for e in view.executors]
    if executors:
        now = datetime.now(UTC)
        details = Table(box=None)
        for column in ("cluster", "queue", "replica", "backend", "labels", "started", "last seen"):
            details.add_column(column)
        for e in executors:
            labels = ",".join(f"{k}={v}" for k, v in sorted(e.labels.items()))
            seen = f"{(now - e.last_seen).total_seconds():.0f}s ago"
            details.add_row(e.cluster, e.queue, e.replica, e.backend, labels, when(e.started), seen)
        out.print(details)
    return 0
