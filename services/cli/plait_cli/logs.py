"""``plait logs ID [NODE] [--attempt N] [--follow]``: what an execution's attempts wrote."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from plait.settings import Settings

if TYPE_CHECKING:  # the parser is built for every command: what runs this one is imported when it runs
    from plait.client import AsyncClient

COMMANDS = frozenset({"logs"})


def add_parsers(commands: Any) -> None:
    """Add ``logs`` to the ``plait`` sub-commands."""
    logs = commands.add_parser(
        "logs",
        help="what an execution's attempts wrote: stdout, stderr and Python logging",
        description="Print the output captured from attempts of execution ID (by default the last attempt of "
        "each node, each headed by its node and attempt number). An attempt's output is stored when it ends; "
        "a long one keeps its start and its end (PLAIT_TASK_OUTPUT_HEAD, PLAIT_TASK_OUTPUT_TAIL).",
    )
    logs.add_argument("execution_id", metavar="ID")
    logs.add_argument("node", nargs="?", metavar="NODE", help="only this node's attempts")
    logs.add_argument("--attempt", type=int, metavar="N", help="attempt N (default: the last one)")
    logs.add_argument(
        "--follow",
        action="store_true",
        help="wait until the chosen attempts that are still running have ended, then print their output "
        "(output is not streamed while an attempt runs: it is read once stored)",
    )


async def print_logs(settings: Settings, execution_id: str, node: str | None, attempt: int | None, follow: bool) -> int:
    from plait.client import AsyncClient
    from plait_cli.stack import nats_for_command

    async with nats_for_command(settings) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            if follow:
                await until_ended(client, execution_id, node, attempt)
            sys.stdout.write(await client.logs(execution_id, node, attempt))
    return 0


async def until_ended(client: AsyncClient, execution_id: str, node: str | None, attempt: int | None) -> None:
    """Return once the attempts ``logs`` would show have all ended, or the execution has."""
    if await _ended(client, execution_id, node, attempt):
        return
    async for _ in client.events(execution_id):  # ends with the execution's last decision
        if await _ended(client, execution_id, node, attempt):
            return


async def _ended(client: AsyncClient, execution_id: str, node: str | None, attempt: int | None) -> bool:
    from plait.client.task_logs import chosen_attempts

    chosen = chosen_attempts(await client.attempt_outputs(execution_id), node, attempt)
    return bool(chosen) and all(one.ended for one in chosen)
