"""Looking up what a launch names: the workflow in the registry, through a launch plan when it names one; for a
relaunch or recovery, the execution it names, read from the log."""

from __future__ import annotations

from plait.adapters.event_log import EventLog
from plait.adapters.registry import Registry
from plait.core.commands import LaunchExecution, ResolvedLaunch
from plait.core.state import launched_workflow
from plait.errors import InputError, NotFound
from plait.protocol import subjects


async def resolve_launch(
    registry: Registry, event_log: EventLog, command: LaunchExecution, default_cluster: str = ""
) -> ResolvedLaunch:
    """The launch with its registered workflow (and launch plan), or with the execution it relaunches and that one's
    workflow, and the project's ``default_cluster``; ``NotFound`` when either is not registered, or no such
    execution was launched."""
    project, domain = command.project, command.domain
    if command.relaunch_of:
        try:
            subject = subjects.execution_subject(project, domain, command.relaunch_of)
        except ValueError as exc:
            raise InputError(f"relaunch_of: {exc}") from None
        original = await event_log.load(subject)
        if original is None:
            raise NotFound(f"execution {command.relaunch_of} does not exist in {project}/{domain}")
        return ResolvedLaunch(
            command=command, workflow=launched_workflow(original), original=original, default_cluster=default_cluster
        )
    if not command.launch_plan:
        workflow = await registry.workflow(project, domain, command.workflow, command.version)
        return ResolvedLaunch(command=command, workflow=workflow, default_cluster=default_cluster)
    plan = await registry.launch_plan(project, domain, command.launch_plan, command.launch_plan_version)
    workflow = await registry.workflow(project, domain, plan.workflow, plan.workflow_version)
    return ResolvedLaunch(command=command, workflow=workflow, launch_plan=plan, default_cluster=default_cluster)
