"""``plait logs ID [NODE] [--attempt N] [--follow]``: what an execution's attempts wrote."""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from plait.settings import Settings
from plait_cli.json_output import print_json

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
        "a long one keeps its start and its end (PLAIT_TASK_OUTPUT_HEAD, PLAIT_TASK_OUTPUT_TAIL). An attempt still "
        "running, or stopped when its execution ended, shows what its live view holds (kept an hour). With --follow, "
        "what running attempts write is printed as they write it, each line headed by its node, until the "
        "execution ends.",
    )
    logs.add_argument("execution_id", metavar="ID")
    logs.add_argument("node", nargs="?", metavar="NODE", help="only this node's attempts")
    logs.add_argument("--attempt", type=int, metavar="N", help="attempt N (default: the last one)")
    logs.add_argument(
        "--follow",
        action="store_true",
        help="print what attempts write while they run (from their first line), and go on until the execution "
        "ends; attempts that ended already are printed first",
    )
    logs.add_argument(
        "--json",
        action="store_true",
        help="print the attempts as JSON (with --follow: each chunk as a line of JSON, as it comes)",
    )


async def print_logs(
    settings: Settings,
    execution_id: str,
    node: str | None,
    attempt: int | None,
    follow: bool,
    as_json: bool = False,
) -> int:
    from plait.client import AsyncClient
    from plait_cli.stack import nats_for_command

    async with nats_for_command(settings) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            if follow and attempt is None:
                await follow_logs(client, execution_id, node, as_json)
                return 0
            if follow:
                await until_ended(client, execution_id, node, attempt)
            if as_json:
                print_json(await attempts_as_json(client, execution_id, node, attempt))
            else:
                sys.stdout.write(await client.logs(execution_id, node, attempt))
    return 0


async def attempts_as_json(
    client: AsyncClient, execution_id: str, node: str | None, attempt: int | None
) -> list[dict[str, Any]]:
    """The attempts ``logs`` shows, each with its node, label, number, whether it ended (or was stopped with its
    execution, never to end), its stored output (None while it runs, or once the logs bucket no longer holds it),
    and what its live view holds when it did not end (else None)."""
    from plait.adapters.output_store import OutputStore
    from plait.client.task_logs import attempt_number, chosen_attempts
    from plait.errors import NotFound

    chosen = chosen_attempts(await client.attempt_outputs(execution_id), node, attempt)
    if not chosen:
        raise NotFound(f"execution {execution_id} has no attempt of {f'node {node!r}' if node else 'any node'}")
    store = OutputStore(client.js)
    shown = []
    for one in chosen:
        text = "" if one.ended and one.output is None else None
        if one.output is not None:
            text = await store.read(one.output)
        shown.append(
            {
                "node": one.node,
                "label": one.label,
                "attempt": attempt_number(one.attempt_id),
                "attempt_id": one.attempt_id,
                "ended": one.ended,
                "stopped": one.stopped,
                "output": text,
                "live_output": None if one.ended else await client.live_output(execution_id, one.attempt_id),
                "size": None if one.output is None else one.output.size,
            }
        )
    return shown


async def follow_logs(client: AsyncClient, execution_id: str, node: str | None, as_json: bool = False) -> None:
    """Print what the execution's attempts write as they write it: each line headed by its node (and its attempt,
    after the first), stored outputs of attempts that had ended already as ``plait logs`` prints them; ``as_json``:
    each chunk as one line of JSON."""
    lines = LineJoiner()
    async for chunk in client.follow_logs(execution_id, node):
        if as_json:
            print_json(dataclasses.asdict(chunk) | {"attempt": chunk.attempt})
        elif chunk.live:
            sys.stdout.write(lines.feed(chunk.attempt_id, _prefix(chunk.label, chunk.attempt), chunk.text, chunk.ended))
        else:
            sys.stdout.write(f"== {chunk.label} (attempt {chunk.attempt}) ==\n")
            text = chunk.text or "(no output)\n"
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


class LineJoiner:
    """Whole lines out of chunks written by several attempts at once: a line is printed once it has ended (or
    its attempt has), headed by its attempt's prefix."""

    def __init__(self) -> None:
        self._partial: dict[str, str] = {}

    def feed(self, key: str, prefix: str, text: str, ended: bool) -> str:
        text = self._partial.pop(key, "") + text
        *whole, rest = text.split("\n")
        if ended and rest:
            whole, rest = [*whole, rest], ""
        if rest:
            self._partial[key] = rest
        return "".join(f"{prefix}{line}\n" for line in whole)


def _prefix(label: str, attempt: int) -> str:
    return f"{label} | " if attempt == 1 else f"{label} (attempt {attempt}) | "


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
