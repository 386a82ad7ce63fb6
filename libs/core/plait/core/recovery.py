"""Relaunch and recovery: a new execution of another one's workflow version, inputs and launch plan, read from that
execution's log; a recovery also reuses the outputs of the nodes that succeeded in it (``NodeRecovered``)."""

from __future__ import annotations

from plait.core.commands import LaunchExecution
from plait.core.events import NodeRecovered
from plait.core.state import Execution

REUSABLE_NODE_STATUSES = ("succeeded", "recovered")


def relaunch_problem(command: LaunchExecution, original: Execution | None) -> str | None:
    """Why ``command`` cannot relaunch (or recover) ``original``; None when it can."""
    source = command.relaunch_of
    if not source:
        return "a recovery names the execution it recovers (relaunch_of)"
    if original is None or original.execution_id != source:
        return f"execution {source} does not exist in {command.project}/{command.domain}"
    if command.inputs:
        return f"a relaunch of execution {source} runs with its inputs: give none"
    if command.launch_plan or command.workflow:
        return f"a relaunch of execution {source} runs its workflow version: name no workflow or launch plan"
    if not command.recover:
        return None
    if original.status == "running":
        return f"execution {source} is still running: recover it once it has failed or been aborted"
    if original.status == "succeeded":
        return f"execution {source} succeeded: there is nothing to recover (relaunch it to run it again)"
    return None


def recovered_nodes(original: Execution) -> list[NodeRecovered]:
    """The outputs ``original``'s succeeded (or itself recovered) nodes produced, in the workflow's order.

    A node that succeeded had every node it reads from succeed before it, so these are closed upstream."""
    return [
        NodeRecovered(node=node.id, outputs=original.node_outputs[node.id], source_execution=original.execution_id)
        for node in original.nodes.values()
        if node.status in REUSABLE_NODE_STATUSES and node.id in original.node_outputs and not node.dynamic_of
    ]
