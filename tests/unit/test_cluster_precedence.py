"""Which cluster an attempt runs on, decided by the pure core: the task's own, then the launch's (or its launch
plan's), then the workflow's, then the project's default; recorded on each ``NodeQueued``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from plait.core.commands import LaunchExecution, ReportAttemptResult, ResolvedLaunch, retry_due
from plait.core.decide import decide, decide_batch
from plait.core.events import ExecutionLaunched, NodeQueued, RetryScheduled, TaskError
from plait.core.model import LaunchPlanSpec
from plait.errors import DefinitionError
from plait.sdk import Workflow, task, workflow
from tests import cluster_workflows, map_workflows, workflows
from tests.helpers.clusters import queued_clusters

AT = datetime(2026, 1, 2, tzinfo=UTC)


def launch(
    wf: Workflow[..., Any],
    *,
    cluster: str = "",
    plan: LaunchPlanSpec | None = None,
    default: str = "dflt",
    inputs: dict[str, Any] | None = None,
) -> ResolvedLaunch:
    command = LaunchExecution(
        command_id="launch", execution_id="e", project="p", domain="d", inputs=inputs or {}, cluster=cluster
    )
    return ResolvedLaunch(command=command, workflow=wf.spec, launch_plan=plan, default_cluster=default)


class TestPrecedence:
    def test_a_task_names_its_own_cluster(self) -> None:
        """Each task of one workflow goes to the cluster it names."""
        assert queued_clusters(launch(cluster_workflows.east_then_west)) == {"in_east": "east", "in_west": "west"}

    def test_nothing_named_takes_the_projects_default(self) -> None:
        assert queued_clusters(launch(cluster_workflows.unplaced, default="home")) == {"anywhere": "home"}

    def test_the_workflows_cluster_is_the_default_of_its_tasks(self) -> None:
        """Its task that names none runs on the workflow's cluster; the one that names its own keeps it."""
        assert queued_clusters(launch(cluster_workflows.northern)) == {"anywhere": "north", "in_east": "east"}

    def test_the_launch_overrides_the_workflow_but_not_the_task(self) -> None:
        clusters = queued_clusters(launch(cluster_workflows.northern, cluster="gpu"))
        assert clusters == {"anywhere": "gpu", "in_east": "east"}

    def test_a_launch_plans_cluster_overrides_the_workflows(self) -> None:
        plan = cluster_workflows.northern_on_south.spec
        assert queued_clusters(launch(cluster_workflows.northern, plan=plan)) == {
            "anywhere": "south",
            "in_east": "east",
        }

    def test_the_launchs_own_cluster_overrides_its_launch_plans(self) -> None:
        plan = cluster_workflows.northern_on_south.spec
        clusters = queued_clusters(launch(cluster_workflows.northern, plan=plan, cluster="gpu"))
        assert clusters == {"anywhere": "gpu", "in_east": "east"}

    def test_the_launch_records_what_it_chose_and_the_default(self) -> None:
        plan = cluster_workflows.northern_on_south.spec
        launched = decide(None, launch(cluster_workflows.northern, plan=plan, default="home"))[0]
        assert isinstance(launched, ExecutionLaunched)
        assert (launched.cluster, launched.default_cluster) == ("south", "home")

    def test_an_execution_launched_before_clusters_leaves_the_choice_to_the_outbox(self) -> None:
        """No default recorded (an old launch): the outbox's own cluster, as before."""
        assert queued_clusters(launch(cluster_workflows.unplaced, default="")) == {"anywhere": ""}

    def test_map_items_go_to_the_cluster_of_their_node(self) -> None:
        outcome = decide_batch(None, [launch(map_workflows.scaled, cluster="gpu", inputs={"xs": [1, 2, 3]})], AT)
        items = [e for e in outcome.events if isinstance(e, NodeQueued)]
        assert len(items) == 3 and {e.cluster for e in items} == {"gpu"}

    def test_a_retry_goes_to_the_same_cluster(self) -> None:
        outcome = decide_batch(None, [launch(workflows.retrying, cluster="gpu")], AT)
        assert outcome.state is not None
        first = next(e for e in outcome.events if isinstance(e, NodeQueued))
        error = TaskError(kind="user", message="boom")
        failed = ReportAttemptResult(
            command_id="r", execution_id="e", node=first.node, attempt_id=first.attempt_id, worker="w", error=error
        )
        events = decide_batch(outcome.state, [failed], AT).events
        retry = next(e for e in events if isinstance(e, NodeQueued | RetryScheduled))
        if isinstance(retry, RetryScheduled):
            events = decide_batch(outcome.state, [retry_due("e", retry)], AT).events
            retry = next(e for e in events if isinstance(e, NodeQueued))
        assert isinstance(retry, NodeQueued) and (retry.attempt, retry.cluster) == (2, "gpu")


class TestValidation:
    def test_a_launch_naming_a_bad_cluster_is_rejected(self) -> None:
        outcome = decide_batch(None, [launch(cluster_workflows.unplaced, cluster="a b")], AT)
        assert outcome.state is None and "cluster 'a b'" in outcome.rejections[0][1]

    @pytest.mark.parametrize("bad", ["", "a.b", "x*", "has space"])
    def test_a_task_naming_a_bad_cluster_is_refused_at_definition(self, bad: str) -> None:
        with pytest.raises(DefinitionError, match="cluster"):
            task(cluster=bad)(_module_level)

    def test_a_workflow_naming_a_bad_cluster_is_refused_at_definition(self) -> None:
        with pytest.raises(DefinitionError, match="cluster"):
            workflow(cluster="no.dots")(_module_level)


class TestVersions:
    def test_specs_that_name_no_cluster_encode_as_before(self) -> None:
        """UNSET is left out of the encoding, so existing task, workflow and launch plan versions are unchanged."""
        spec = cluster_workflows.unplaced.spec
        assert b'"cluster"' not in msgspec.json.encode(spec)
        assert spec.tasks[next(iter(spec.tasks))].cluster is msgspec.UNSET

    def test_a_named_cluster_is_in_the_spec(self) -> None:
        assert cluster_workflows.in_east.spec.cluster == "east"
        assert cluster_workflows.northern.spec.cluster == "north"
        assert cluster_workflows.northern_on_south.spec.cluster == "south"


def _module_level(x: int) -> int:
    return x
