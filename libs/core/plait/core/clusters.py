"""Which cluster an attempt runs on. Pure: decided from the execution's log alone.

Precedence, highest first:

1. the task's own ``@task(cluster=...)``;
2. the launch's ``cluster=`` (``launch(..., cluster=...)``, ``plait run --cluster``), else its launch plan's;
3. the workflow's ``@workflow(cluster=...)``;
4. the project's default cluster (``PLAIT_DEFAULT_CLUSTER``, recorded at launch).

Each of the first three levels may name a cluster or give a cluster selector (``cluster_selector=``, not both): the
first level that chooses either decides, so a named cluster at a more specific level wins over a selector at a less
specific one. A selector stands for the cluster it chose at launch (``plait.core.selectors``), recorded on
``ExecutionLaunched.selected_clusters``.

The answer is recorded in each ``NodeQueued`` (``cluster``), and the outbox publishes the attempt's dispatch to
``plait.dispatch.<cluster>.<queue>``, where only that cluster's executors pull.
"""

from __future__ import annotations

import re

import msgspec

from plait.core.model import LaunchPlanSpec, TaskSpec, WorkflowSpec
from plait.core.selectors import (
    LiveExecutor,
    choose_cluster,
    chosen_selector,
    no_match_reason,
    selector_problem,
    selector_text,
)
from plait.core.state import Execution

_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")  # one subject token as it is (no '.', ':' or wildcards)


def chosen(value: str | msgspec.UnsetType) -> str:
    """A spec's ``cluster`` option as a string ("": none chosen)."""
    return "" if isinstance(value, msgspec.UnsetType) else value


class Placement(msgspec.Struct, frozen=True):
    """What one level chose: a cluster by name, or a cluster selector (at most one of them; neither: nothing)."""

    cluster: str = ""
    selector: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.cluster or self.selector)


def placement_at_launch(
    command_cluster: str, command_selector: dict[str, str], plan: LaunchPlanSpec | None, original: Execution | None
) -> Placement:
    """What a launch chose: its own cluster or selector, else its launch plan's; a relaunch that chooses neither
    keeps its original's choice (empty: nothing chose)."""
    if command_cluster or command_selector:
        return Placement(command_cluster, command_selector)
    if plan is not None:
        return Placement(chosen(plan.cluster), chosen_selector(plan.cluster_selector))
    if original is not None:
        return Placement(original.launch_cluster, original.launch_selector)
    return Placement()


def placement_of(task: TaskSpec, workflow: WorkflowSpec, launched: Placement) -> Placement:
    """The level that decides where ``task`` runs (see the module's precedence); empty: the project's default."""
    own = Placement(chosen(task.cluster), chosen_selector(task.cluster_selector))
    of_workflow = Placement(chosen(workflow.cluster), chosen_selector(workflow.cluster_selector))
    return own or launched or of_workflow


def resolve_cluster(
    task: TaskSpec,
    workflow: WorkflowSpec,
    launched_on: str,
    default: str,
    launch_selector: dict[str, str] | None = None,
    selected: dict[str, str] | None = None,
) -> str:
    """The cluster an attempt of ``task`` runs on (see the module's precedence); "" when nothing names one (an
    execution launched before clusters were recorded: the outbox then uses its own default). A selector not
    resolved at launch (one of a task a dynamic node generated) leaves the attempt on the project's default."""
    placement = placement_of(task, workflow, Placement(launched_on, launch_selector or {}))
    if placement.cluster:
        return placement.cluster
    if placement.selector:
        return (selected or {}).get(selector_text(placement.selector)) or default
    return default


def cluster_of_task(state: Execution, task_name: str) -> str:
    """The cluster the attempts of ``task_name`` run on in this execution (what its ``NodeQueued`` events record)."""
    return resolve_cluster(
        state.workflow.tasks[task_name],
        state.workflow,
        state.launch_cluster,
        state.default_cluster,
        state.launch_selector,
        state.selected_clusters,
    )


def selectors_in_force(workflow: WorkflowSpec, launched: Placement) -> list[dict[str, str]]:
    """The selectors that decide where some task of ``workflow`` runs, once each, by text (those a more specific
    level overrides are left out: nothing needs them)."""
    found = {
        selector_text(p.selector): p.selector
        for t in workflow.tasks.values()
        if (p := placement_of(t, workflow, launched)).selector
    }
    return [found[text] for text in sorted(found)]


def select_clusters(selectors: list[dict[str, str]], live: tuple[LiveExecutor, ...]) -> dict[str, str] | str:
    """The cluster each selector chooses among the ``live`` executors, by the selector's text; or, when one matches
    none, the reason the launch is refused. An executor announcing a cluster no subject can name is left out."""
    live = tuple(e for e in live if cluster_problem(e.cluster, "") is None)
    selected: dict[str, str] = {}
    for selector in selectors:
        cluster = choose_cluster(selector, live)
        if cluster is None:
            return no_match_reason(selector, live)
        selected[selector_text(selector)] = cluster
    return selected


def cluster_problem(value: str | msgspec.UnsetType, owner: str) -> str | None:
    """Why ``value`` cannot name a cluster (it must be one subject token), or None when it can (or is UNSET)."""
    if isinstance(value, msgspec.UnsetType):
        return None
    if not _NAME.match(value):
        return f"{owner}: cluster {value!r} must be 1 to 64 letters, digits, '_' or '-'"
    return None


def placement_problem(
    cluster: str | msgspec.UnsetType, selector: dict[str, str] | msgspec.UnsetType, owner: str
) -> str | None:
    """Why ``cluster`` and ``selector``, chosen at one level, cannot place work (both given, or either invalid)."""
    if not isinstance(cluster, msgspec.UnsetType) and not isinstance(selector, msgspec.UnsetType):
        return f"{owner}: give a cluster or a cluster selector, not both"
    return cluster_problem(cluster, owner) or selector_problem(selector, owner)
