"""The user-facing SDK: tasks, workflows and how their values are typed."""

from plait.sdk.task import Task, task
from plait.sdk.workflow import Workflow, workflow

__all__ = ["Task", "Workflow", "task", "workflow"]
