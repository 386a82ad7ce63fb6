"""``plait executions abort|relaunch|recover``: act on one execution through the log, and say what came of it."""

from __future__ import annotations

from rich.console import Console

from plait.client import AsyncClient
from plait.client.identity import default_principal
from plait.core.state import Execution
from plait.replay import replay
from plait.settings import Settings
from plait_cli.json_output import print_json
from plait_cli.stack import nats_for_command

ABORT_DECIDED_SECONDS = 30.0  # how long `abort` waits for the scheduler to decide it


def principal(settings: Settings) -> str:
    """Who the command acts as: ``PLAIT_PRINCIPAL``, else ``user@host``."""
    return settings.principal or default_principal()


async def _state(client: AsyncClient, execution_id: str) -> Execution:
    """The execution as its log has it now; ``NotFound`` (one line) when it does not exist."""
    return replay(await client.records(execution_id))


async def abort_execution(settings: Settings, execution_id: str, reason: str, as_json: bool = False) -> int:
    """Abort a running execution and wait until the scheduler decided it; one that ended first is left as it is
    (exit 0, said so). Exit 1 when the execution does not exist (a one-line error). ``as_json``: print the
    execution's status then, and whether this command aborted it."""
    err = Console(stderr=True)
    aborted = False
    async with nats_for_command(settings) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            state = await _state(client, execution_id)
            if not state.terminal:
                await client.abort(execution_id, reason, aborted_by=principal(settings))
                await client.wait(execution_id, timeout=ABORT_DECIDED_SECONDS)
                aborted = True
                state = await _state(client, execution_id)
    if as_json:
        print_json(
            {
                "execution_id": execution_id,
                "status": state.status,
                "aborted": aborted and state.status == "aborted",
                "reason": state.abort_reason,
                "aborted_by": state.aborted_by,
            }
        )
        return 0
    if not aborted:
        err.print(f"execution {execution_id} already {state.status}: nothing to abort", highlight=False)
    elif state.status == "aborted":
        err.print(f"aborted execution {execution_id}: {state.abort_reason} (by {state.aborted_by})", highlight=False)
    else:
        err.print(f"execution {execution_id} {state.status} before the abort was decided: nothing to abort")
    return 0


async def launch_again(settings: Settings, execution_id: str, *, recover: bool, as_json: bool = False) -> int:
    """Relaunch (or recover) ``execution_id``: print the new execution's id on stdout (``as_json``: with the one
    it came from)."""
    out, err = Console(), Console(stderr=True)
    async with nats_for_command(settings) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            again = client.recover if recover else client.relaunch
            handle = await again(execution_id, launched_by=principal(settings))
    verb = "recovered" if recover else "relaunched"
    if as_json:
        print_json({"execution_id": handle.id, "from": execution_id, "how": "recover" if recover else "relaunch"})
        return 0
    err.print(f"{verb} execution {execution_id} as [bold cyan]{handle.id}[/]", highlight=False)
    out.print(handle.id, highlight=False)
    return 0
