"""Which cluster an attempt runs on. Pure: decided from the execution's log alone.

Precedence, highest first:

1. the task's own ``@task(cluster=...)``;
2. the launch's ``cluster=`` (``launch(..., cluster=...)``, ``plait run --cluster``), else its launch plan's;
3. the workflow's ``@workflow(cluster=...)``;
4. the project's default cluster (``PLAIT_DEFAULT_CLUSTER``, recorded at launch).

The answer is recorded in each ``NodeQueued`` (``cluster``), and the outbox publishes the attempt's dispatch to
``plait.dispatch.<cluster>.<queue>``, where only that cluster's executors pull.
"""

from __future__ import annotations

import re

import msgspec

from plait.core.model import LaunchPlanSpec, TaskSpec, WorkflowSpec
from plait.core.state import Execution

_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")  # one subject token as it is (no '.', ':' or wildcards)


def chosen(value: str | msgspec.UnsetType) -> str:
    """A spec's ``cluster`` option as a string ("": none chosen)."""
    return "" if isinstance(value, msgspec.UnsetType) else value


def launch_cluster(launch_option: str, plan: LaunchPlanSpec | None) -> str:
    """The cluster a launch chose: its own option, else its launch plan's ("": neither chose one)."""
    return launch_option or (chosen(plan.cluster) if plan is not None else "")


def resolve_cluster(task: TaskSpec, workflow: WorkflowSpec, launched_on: str, default: str) -> str:
    """The cluster an attempt of ``task`` runs on (see the module's precedence); "" when nothing names one (an
    execution launched before clusters were recorded: the outbox then uses its own default)."""
    return chosen(task.cluster) or launched_on or chosen(workflow.cluster) or default


def cluster_of_task(state: Execution, task_name: str) -> str:
    """The cluster the attempts of ``task_name`` run on in this execution (what its ``NodeQueued`` events record)."""
    return resolve_cluster(state.workflow.tasks[task_name], state.workflow, state.launch_cluster, state.default_cluster)


def cluster_problem(value: str | msgspec.UnsetType, owner: str) -> str | None:
    """Why ``value`` cannot name a cluster (it must be one subject token), or None when it can (or is UNSET)."""
    if isinstance(value, msgspec.UnsetType):
        return None
    if not _NAME.match(value):
        return f"{owner}: cluster {value!r} must be 1 to 64 letters, digits, '_' or '-'"
    return None
