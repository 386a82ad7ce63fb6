"""The user-facing SDK: tasks, workflows and how their values are typed."""

from plait.sdk.conditional import conditional
from plait.sdk.dynamic import Dynamic, dynamic
from plait.sdk.files import Directory, File
from plait.sdk.gates import approve, sleep, wait_for_input
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.map_task import MappedTask, map_task
from plait.sdk.task import Task, task
from plait.sdk.workflow import Workflow, workflow

__all__ = [
    "Directory",
    "Dynamic",
    "File",
    "LaunchPlan",
    "MappedTask",
    "Task",
    "Workflow",
    "approve",
    "conditional",
    "dynamic",
    "map_task",
    "sleep",
    "task",
    "wait_for_input",
    "workflow",
]
