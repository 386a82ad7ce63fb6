"""``plait register``: register a workflow (and its tasks), with its source bundle when ``--fast``."""

from __future__ import annotations

from rich.console import Console

from plait.client import AsyncClient
from plait.sdk.workflow import Workflow
from plait.settings import Settings
from plait_cli.json_output import print_json
from plait_cli.references import runnable
from plait_cli.stack import nats_for_command


async def register_workflow(settings: Settings, reference: str, fast: bool, as_json: bool = False) -> int:
    """Register the workflow ``reference`` names; print its version on stdout (``as_json``: its kind, name,
    version and whether its source bundle went with it)."""
    entity = runnable(reference)
    out, err = Console(), Console(stderr=True)
    async with nats_for_command(settings) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            version = await client.register(entity, fast=fast)
    bundled = fast and isinstance(entity, Workflow)
    if as_json:
        kind = "workflow" if isinstance(entity, Workflow) else "launch_plan"
        print_json({"kind": kind, "name": entity.name, "version": version, "bundle": bundled})
        return 0
    err.print(f"registered {entity.name}{' with its source bundle' if bundled else ''}", highlight=False)
    out.print(version, highlight=False)
    return 0
