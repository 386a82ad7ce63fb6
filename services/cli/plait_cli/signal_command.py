"""``plait signal ID NAME [VALUE] [--reject]``: give a waiting gate its value, or approve (reject) an approval."""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from plait.settings import Settings
from plait_cli.json_output import print_json

COMMANDS = frozenset({"signal"})


def add_parsers(commands: Any) -> None:
    """Add ``signal`` to the ``plait`` sub-commands."""
    signal = commands.add_parser(
        "signal",
        help="give a waiting gate its value, or approve (--reject: reject) an approval",
        description='Send signal NAME to execution ID. VALUE is read as JSON (42, 0.5, true, "text", [1, 2]); '
        "a VALUE that is not JSON is taken as text. The scheduler checks it against the type the gate expects "
        "and refuses a wrong one, saying which type it expects. An approval takes no VALUE.",
    )
    signal.add_argument("execution_id", metavar="ID")
    signal.add_argument("name", metavar="NAME")
    signal.add_argument("value", nargs="?", metavar="VALUE")
    signal.add_argument("--reject", action="store_true", help="reject the approval NAME (its execution fails)")
    signal.add_argument("--json", action="store_true", help="print what was sent as JSON")


def parse_value(text: str | None) -> Any:
    """A signal's value from the command line: JSON, or else the text itself."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run(settings: Settings, args: argparse.Namespace) -> int:
    return anyio.run(_signal, settings, args.execution_id, args.name, parse_value(args.value), args.reject, args.json)


async def _signal(settings: Settings, execution_id: str, name: str, value: Any, reject: bool, as_json: bool) -> int:
    from plait.client import AsyncClient
    from plait_cli.stack import nats_for_command

    async with nats_for_command(settings, services=()) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            await client.signal(execution_id, name, value, reject=reject)
    if as_json:
        print_json({"execution_id": execution_id, "signal": name, "value": value, "rejected": reject})
        return 0
    what = "rejected" if reject else "given"
    print(f"signal '{name}' {what} to execution {execution_id}")
    return 0
