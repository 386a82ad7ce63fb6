"""Following an execution in the terminal: a live view whose clocks tick while tasks run, then its result."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
from rich.console import Console
from rich.live import Live

from plait.client import AsyncClient
from plait.core.state import Execution, apply_decision
from plait_cli.outputs import print_output_lines
from plait_cli.progress import print_transition, render

REDRAW_SECONDS = 0.25
"""The live view is drawn this often (not at each decision: drawing a thousand nodes costs more than deciding them),
so that running times and rates move."""


async def follow_until_ended(client: AsyncClient, execution_id: str, err: Console) -> Execution:
    """The execution's final state, once it has ended, shown as it goes: a live view on a terminal, else a line
    per node that changed status."""
    state: Execution | None = None
    if err.is_terminal:
        with Live(console=err, auto_refresh=False, transient=False) as live:
            async with anyio.create_task_group() as redraws:
                shown: list[Execution] = []
                redraws.start_soon(_redraw, live, shown)
                async for state in _states(client, execution_id):
                    if not shown:  # the first at once; then on the redraw timer, not at each decision
                        live.update(render(state), refresh=True)
                    shown[:] = [state]
                redraws.cancel_scope.cancel()
                if state is not None:
                    live.update(render(state), refresh=True)  # how it ended
    else:
        seen: dict[str, str] = {}
        async for state in _states(client, execution_id):
            print_transition(err, seen, state)
    assert state is not None  # noqa: S101  an invariant of this code, not a check of input
    return state


async def _redraw(live: Live, shown: list[Execution]) -> None:
    """Draws the latest state again on the event loop (the one thread that changes it), between its updates."""
    while True:
        await anyio.sleep(REDRAW_SECONDS)
        if shown:
            live.update(render(shown[0]), refresh=True)


async def _states(client: AsyncClient, execution_id: str) -> AsyncIterator[Execution]:
    """The execution's state after each of its decisions, until it ends."""
    state: Execution | None = None
    async for stored in client.events(execution_id):
        state = apply_decision(state, stored.decision, stored.sequence, stored.digest)
        if state is not None:
            yield state


def report(final: Execution, as_json: bool, out: Console, err: Console) -> int:
    """Print how the execution ended (its outputs, or why not); the exit code: 0 only if it succeeded."""
    if as_json:
        sys.stdout.write(msgspec.json.encode(_summary(final)).decode() + "\n")
    else:
        _print_result(final, out, err)
    return 0 if final.status == "succeeded" else 1


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
        print_output_lines(state.execution_id, state.outputs or {}, out, err)
        return
    if state.status == "aborted":
        err.print(f"[magenta]aborted[/]: {state.abort_reason}", highlight=False)
        return
    error = state.error
    node = state.nodes.get(state.failed_node or "")
    attempts = node.attempt_count if node else 0
    err.print(
        f"[bold red]failed[/] in {elapsed:.2f}s: node '{state.failed_node}' (attempt {attempts})", highlight=False
    )
    if error is not None:
        if error.traceback:
            err.print(error.traceback.rstrip(), highlight=False, markup=False)
        else:
            err.print(f"{error.error_type or error.kind + ' error'}: {error.message}", highlight=False, markup=False)
        if error.output_tail:
            err.print(f"[dim]last output of the attempt (plait logs {state.execution_id} {state.failed_node}):[/]")
            err.print(error.output_tail, highlight=False, markup=False)
