"""``plait replay`` and ``plait audit verify``: an execution's history, rebuilt and checked from the log."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from plait.audit import Problem, verify_catalog
from plait.audit_lineage import MAX_EDGES, check_lineage, verify_lineage
from plait.client import AsyncClient
from plait.core.state import Execution
from plait.errors import InputError, NotFound
from plait.invariants import check_execution
from plait.replay import replay, timeline
from plait.settings import Settings
from plait.telemetry import trace_id_of
from plait_cli.audit_signing import SignatureChecks, check_lost_executions, check_records, check_registry_and_cache
from plait_cli.progress import STATUS_STYLE
from plait_cli.stack import nats_for_command


def parse_point(at: str | None) -> tuple[int | None, datetime | None]:
    """``--at``: a stream sequence (digits) or an ISO 8601 time with its offset."""
    if at is None:
        return None, None
    if at.isdigit():
        return int(at), None
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise InputError(f"--at expects a stream sequence or an ISO 8601 time, got '{at}'") from None
    if moment.tzinfo is None:
        raise InputError(f"--at time '{at}' needs a UTC offset (for instance {at}+00:00)")
    return None, moment


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _print_state(state: Execution) -> None:
    console = _console()
    console.print(
        f"[bold]execution[/] {state.execution_id}  {state.workflow.name}  after sequence {state.last_sequence} "
        f"({state.decisions} decisions)",
        highlight=False,
    )
    console.print(f"status: [{STATUS_STYLE.get(state.status, '')}]{state.status}[/]", highlight=False)
    if trace_id := trace_id_of(state.traceparent):
        console.print(f"trace: {trace_id}", highlight=False)
    if state.outputs is not None:
        console.print(f"outputs: {msgspec.json.encode(state.outputs).decode()}", highlight=False, soft_wrap=True)
    table = Table(box=None)
    for column in ("node", "status", "attempts", "worker"):
        table.add_column(column)
    for node in state.nodes.values():
        worker = node.attempts[-1].worker if node.attempts else ""
        table.add_row(
            node.id, f"[{STATUS_STYLE.get(node.status, '')}]{node.status}[/]", str(node.attempt_count), worker
        )
    console.print(table)


async def replay_execution(
    settings: Settings, execution_id: str, at: str | None, as_json: bool, show_timeline: bool
) -> int:
    at_sequence, at_time = parse_point(at)
    async with nats_for_command(settings, services=()) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            records = await client.records(execution_id)
    if show_timeline:
        transitions = timeline(records, at_sequence=at_sequence, at_time=at_time)
        if as_json:
            _json(transitions)
            return 0
        table = Table(box=None)
        for column in ("seq", "at", "replica", "event", "node", "attempt", "caused by", "detail"):
            table.add_column(column)
        for t in transitions:
            table.add_row(
                str(t.sequence),
                t.at.isoformat(timespec="milliseconds"),
                t.replica,
                t.event,
                t.node or "",
                (t.attempt_id or "").rsplit("/", 1)[-1],
                ", ".join(command.replace(f"{execution_id}/", "") for command in t.commands),
                t.detail,
            )
        _console().print(table)
        return 0
    state = replay(records, at_sequence=at_sequence, at_time=at_time)
    if as_json:
        _json(state)
    else:
        _print_state(state)
    return 0


async def _verify_one(
    client: AsyncClient, execution_id: str, catalog: bool, ended: bool, checks: SignatureChecks | None = None
) -> list[Problem]:
    records = await client.records(execution_id)
    problems = check_execution(records, ended=ended) + check_lineage(records)
    if checks is not None:
        problems += await check_records(client, records, checks)
    if problems or not catalog:
        return problems
    state = replay(records)
    try:
        shown = await client.show_execution(execution_id, min_sequence=state.last_sequence)
    except NotFound:
        return [Problem(kind="catalog_mismatch", message="the catalog has no row", execution_id=execution_id)]
    graph = await client.lineage(execution_id, depth=0, max_edges=MAX_EDGES, min_sequence=state.last_sequence)
    return verify_catalog(state, shown) + verify_lineage(records, graph)


async def audit_verify(
    settings: Settings,
    execution_id: str | None,
    everything: bool,
    catalog: bool,
    ended: bool = False,
    as_json: bool = False,
    *,
    checks: SignatureChecks | None = None,
) -> int:
    """Check each execution's chain and invariants (``plait.invariants``), then its catalog row; 1 on any problem.

    ``ended``: every execution must have ended (for a system that has finished its work)."""
    if (execution_id is None) == (not everything):
        raise InputError("give an execution id or --all")
    async with nats_for_command(settings, services=("catalog",) if catalog else ()) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            ids = await client.execution_ids() if everything else [execution_id or ""]
            problems: list[Problem] = []
            for one in ids:
                problems += await _verify_one(client, one, catalog, ended, checks)
            others, other_problems = (0, []) if checks is None else await check_registry_and_cache(client, checks)
            problems += other_problems
            if everything and checks is not None:
                problems += await check_lost_executions(client, ids, checks)
    checked = "chains, invariants and catalog" if catalog else "chains and invariants"
    if checks is not None and checks.trust is not None:
        checked += f", signatures (also of {others} registry and cache subjects)"
        checked += f", {len(checks.checkpoints)} checkpoints" if checks.checkpoints else ""
    if as_json:
        report = {"executions": len(ids), "checked": checked, "problems": msgspec.to_builtins(problems)}
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
        return 1 if problems else 0
    for problem in problems:
        print(problem)
    print(f"{len(ids)} executions, {len(problems)} problems ({checked} checked)", file=sys.stderr)
    return 1 if problems else 0
