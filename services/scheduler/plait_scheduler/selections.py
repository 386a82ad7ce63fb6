"""Cluster selectors at launch: the live executors a launch's selectors are matched against, read from the bucket of
live executors here, in the shell, so that ``decide`` chooses from them and records its choice on the launch."""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext

from plait.adapters.executors import live_executors
from plait.core.clusters import placement_at_launch, selectors_in_force
from plait.core.commands import ResolvedLaunch
from plait.core.selectors import LiveExecutor


def needs_live_executors(resolved: ResolvedLaunch) -> bool:
    """Whether some task of the launch runs where a cluster selector chooses."""
    command = resolved.command
    placed = placement_at_launch(command.cluster, command.cluster_selector, resolved.launch_plan, resolved.original)
    return bool(selectors_in_force(resolved.workflow, placed))


async def with_live_executors(js: JetStreamContext, resolved: ResolvedLaunch) -> ResolvedLaunch:
    """The launch with the executors live now when it has a selector to resolve; as it is otherwise (nothing read)."""
    if not needs_live_executors(resolved):
        return resolved
    live = tuple(LiveExecutor(cluster=e.cluster, labels=e.labels) for e in await live_executors(js))
    return msgspec.structs.replace(resolved, live_executors=live)
