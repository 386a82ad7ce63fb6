"""The user-facing SDK: tasks, workflows and how their values are typed."""

from plait.sdk.conditional import conditional
from plait.sdk.gates import approve, sleep, wait_for_input
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.map_task import MappedTask, map_task
from plait.sdk.task import Task, task
from plait.sdk.workflow import Workflow, workflow

__all__ = [
    "LaunchPlan",
    "MappedTask",
    "Task",
    "Workflow",
    "approve",
    "conditional",
    "map_task",
    "sleep",
    "task",
    "wait_for_input",
    "workflow",
]
