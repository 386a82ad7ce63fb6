"""``plait run``: register, launch, follow with a live view, print the outputs."""

from __future__ import annotations

import getpass
import sys
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from rich.console import Console
from rich.live import Live

from plait.client import AsyncClient
from plait.core.state import Execution, apply_decision
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.workflow import Workflow
from plait.settings import Settings
from plait_cli.progress import print_transition, render
from plait_cli.stack import nats_for_command, print_steps


async def run_workflow(
    settings: Settings,
    workflow: Workflow[Any, Any] | LaunchPlan,
    inputs: dict[str, Any],
    *,
    follow: bool,
    as_json: bool,
    overwrite_cache: bool = False,
    cluster: str | None = None,
) -> int:
    """Launch ``workflow`` (or a launch plan) and, when ``follow``, wait for it; exit code 1 unless it succeeded."""
    out, err = Console(), Console(stderr=True)
    async with nats_for_command(settings, report=None if as_json else print_steps(err)) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            execution = await client.launch(
                workflow, inputs, launched_by=getpass.getuser(), overwrite_cache=overwrite_cache, cluster=cluster
            )
            execution_id = execution.id
            what = f"launch plan {workflow.name}" if isinstance(workflow, LaunchPlan) else workflow.name
            err.print(f"launched execution [bold cyan]{execution_id}[/] of {what}", highlight=False)
            if not follow:
                out.print(execution_id, highlight=False)
                return 0
            final = await _follow(client, execution_id, err)
    if as_json:
        sys.stdout.write(msgspec.json.encode(_summary(final)).decode() + "\n")
    else:
        _print_result(final, out, err)
    return 0 if final.status == "succeeded" else 1


async def _follow(client: AsyncClient, execution_id: str, err: Console) -> Execution:
    state: Execution | None = None
    if err.is_terminal:
        with Live(console=err, refresh_per_second=8, transient=False) as live:
            async for state in _states(client, execution_id):
                live.update(render(state))
    else:
        seen: dict[str, str] = {}
        async for state in _states(client, execution_id):
            print_transition(err, seen, state)
    assert state is not None
    return state


async def _states(client: AsyncClient, execution_id: str) -> AsyncIterator[Execution]:
    """The execution's state after each of its decisions, until it ends."""
    state: Execution | None = None
    async for stored in client.events(execution_id):
        state = apply_decision(state, stored.decision, stored.sequence, stored.digest)
        if state is not None:
            yield state


def _summary(state: Execution) -> dict[str, Any]:
    return {
        "execution_id": state.execution_id,
        "status": state.status,
        "outputs": state.outputs,
        "failed_node": state.failed_node,
        "error": msgspec.to_builtins(state.error) if state.error else None,
    }


def _print_result(state: Execution, out: Console, err: Console) -> None:
    elapsed = (state.finished_at - state.launched_at).total_seconds() if state.finished_at and state.launched_at else 0
    if state.status == "succeeded":
        err.print(f"[green]succeeded[/] in {elapsed:.2f}s", highlight=False)
        for name, value in (state.outputs or {}).items():
            out.print(f"{name} = {msgspec.json.encode(value).decode()}", highlight=False, soft_wrap=True)
        return
    if state.status == "aborted":
        err.print(f"[magenta]aborted[/]: {state.abort_reason}", highlight=False)
        return
    error = state.error
    node = state.nodes.get(state.failed_node or "")
    attempts = len(node.attempts) if node else 0
    err.print(
        f"[bold red]failed[/] in {elapsed:.2f}s: node '{state.failed_node}' (attempt {attempts})", highlight=False
    )
    if error is not None:
        if error.traceback:
            err.print(error.traceback.rstrip(), highlight=False, markup=False)
        else:
            err.print(f"{error.error_type or error.kind + ' error'}: {error.message}", highlight=False, markup=False)
