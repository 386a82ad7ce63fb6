"""``plait run``: register, launch, follow with a live view, print the outputs."""

from __future__ import annotations

import getpass
from typing import Any

from rich.console import Console

from plait.client import AsyncClient
from plait.errors import InputError
from plait.protocol.executors import parse_labels
from plait.sdk.bundles import NoBundle
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.workflow import Workflow
from plait.settings import Settings
from plait_cli.follow import follow_until_ended, report
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
    fast: bool = True,
    cluster_selector: str | None = None,
) -> int:
    """Launch ``workflow`` (or a launch plan) and, when ``follow``, wait for it; exit code 1 unless it succeeded.
    ``fast``: register the workflow with its source bundle (fast registration). ``cluster_selector``: ``k=v,...``."""
    out, err = Console(), Console(stderr=True)
    placement: dict[str, Any] = {"cluster": cluster, "cluster_selector": selector_option(cluster_selector)}
    async with nats_for_command(settings, report=None if as_json else print_steps(err)) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            try:
                execution = await client.launch(
                    workflow,
                    inputs,
                    launched_by=getpass.getuser(),
                    overwrite_cache=overwrite_cache,
                    fast=fast,
                    **placement,
                )
            except NoBundle as exc:  # not a failure of the run: it runs from the files, as without a bundle
                err.print(f"[yellow]registering without a source bundle:[/] {exc}", highlight=False)
                execution = await client.launch(
                    workflow, inputs, launched_by=getpass.getuser(), overwrite_cache=overwrite_cache, **placement
                )
            execution_id = execution.id
            what = f"launch plan {workflow.name}" if isinstance(workflow, LaunchPlan) else workflow.name
            err.print(f"launched execution [bold cyan]{execution_id}[/] of {what}", highlight=False)
            if not follow:
                out.print(execution_id, highlight=False)
                err.print(f"follow it with: plait executions follow {execution_id}", highlight=False)
                return 0
            final = await follow_until_ended(client, execution_id, err)
    return report(final, as_json, out, err)


def selector_option(text: str | None) -> dict[str, str] | None:
    """``--cluster-selector``'s ``key=value,...`` as a selector (None: not given); ``InputError`` naming a bad item."""
    if text is None:
        return None
    try:
        return parse_labels(text)
    except ValueError as exc:
        raise InputError(f"--cluster-selector: {exc}") from None
