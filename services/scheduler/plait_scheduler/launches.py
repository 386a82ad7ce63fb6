"""Looking up what a launch names in the registry: the workflow, through a launch plan when it names one."""

from __future__ import annotations

from plait.adapters.registry import Registry
from plait.core.commands import LaunchExecution, ResolvedLaunch


async def resolve_launch(registry: Registry, command: LaunchExecution, default_cluster: str = "") -> ResolvedLaunch:
    """The launch with its registered workflow (and launch plan), and the project's ``default_cluster``;
    ``NotFound`` when either is not registered."""
    project, domain = command.project, command.domain
    if not command.launch_plan:
        workflow = await registry.workflow(project, domain, command.workflow, command.version)
        return ResolvedLaunch(command=command, workflow=workflow, default_cluster=default_cluster)
    plan = await registry.launch_plan(project, domain, command.launch_plan, command.launch_plan_version)
    workflow = await registry.workflow(project, domain, plan.workflow, plan.workflow_version)
    return ResolvedLaunch(command=command, workflow=workflow, launch_plan=plan, default_cluster=default_cluster)
