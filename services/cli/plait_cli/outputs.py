"""``plait executions outputs ID [--save DIR]``: a succeeded execution's outputs, with what is stored by reference read
and its files and directories downloaded when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console

from plait.client import AsyncClient
from plait.core.values import contains_refs
from plait.settings import Settings
from plait_cli.json_output import print_json
from plait_cli.stack import nats_for_command


def print_output_lines(execution_id: str, outputs: dict[str, Any], out: Console, err: Console) -> None:
    """One ``name = JSON`` line per output on ``out`` (what ``plait run`` and this command print); under outputs
    stored by reference, how to read them, on ``err``."""
    for name, value in outputs.items():
        out.print(f"{name} = {msgspec.json.encode(value).decode()}", highlight=False, soft_wrap=True)
    if contains_refs(outputs):
        hint = f"(stored by reference: `plait executions outputs {execution_id} --save DIR` reads them, files included)"
        err.print(hint, highlight=False, markup=False, soft_wrap=True)


async def print_outputs(settings: Settings, execution_id: str, save: str | None, as_json: bool) -> int:
    """Print the outputs, one ``name = JSON`` line each (``as_json``: one JSON object); with ``save``, read what is
    stored by reference, downloading files and directories under it, and print their local paths."""
    async with nats_for_command(settings) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            if save is not None:
                outputs = await client.outputs(execution_id, Path(save))
            else:
                outputs = await client.stored_outputs(execution_id)
    if as_json:
        print_json(outputs)
        return 0
    print_output_lines(execution_id, outputs, Console(), Console(stderr=True))
    return 0
