"""Cluster label selectors, decided by the pure core: a selector chooses, at launch, the cluster whose live executors
match it, the choice is recorded on the launch, and each attempt's cluster follows the usual precedence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from plait.core.clusters import cluster_of_task, select_clusters
from plait.core.commands import LaunchExecution, ResolvedLaunch
from plait.core.decide import Rejected, decide, decide_batch
from plait.core.events import ExecutionLaunched
from plait.core.model import LaunchPlanSpec
from plait.core.selectors import LiveExecutor, choose_cluster, no_match_reason, selector_problem, selector_text
from plait.core.state import Execution, launch
from plait.errors import DefinitionError, InputError
from plait.sdk import Workflow, task, workflow
from plait.sdk.launch_plan import LaunchPlan
from plait_cli.run import selector_option
from tests import cluster_workflows
from tests.helpers.clusters import queued_clusters

AT = datetime(2026, 1, 2, tzinfo=UTC)
A100_EAST = LiveExecutor(cluster="gpu-east", labels={"gpu": "a100", "region": "east"})
A100_WEST = LiveExecutor(cluster="gpu-west", labels={"gpu": "a100", "region": "west"})
CPU_EAST = LiveExecutor(cluster="cpu-east", labels={"region": "east"})
SOUTH = LiveExecutor(cluster="south-1", labels={"region": "south"})
LIVE = (A100_EAST, A100_WEST, CPU_EAST, CPU_EAST, SOUTH)


def resolved(
    wf: Workflow[..., Any],
    live: tuple[LiveExecutor, ...] = LIVE,
    *,
    cluster: str = "",
    selector: dict[str, str] | None = None,
    plan: LaunchPlanSpec | None = None,
    original: Execution | None = None,
    relaunch_of: str = "",
) -> ResolvedLaunch:
    command = LaunchExecution(
        command_id="launch",
        execution_id="e2" if relaunch_of else "e",
        project="p",
        domain="d",
        cluster=cluster,
        cluster_selector=selector or {},
        relaunch_of=relaunch_of,
    )
    return ResolvedLaunch(
        command=command,
        workflow=wf.spec,
        launch_plan=plan,
        original=original,
        default_cluster="dflt",
        live_executors=live,
    )


def launched(resolved_launch: ResolvedLaunch) -> ExecutionLaunched:
    first = decide(None, resolved_launch)[0]
    assert isinstance(first, ExecutionLaunched)
    return first


class TestChoosingACluster:
    def test_a_selectors_text_is_its_pairs_sorted_by_key(self) -> None:
        assert selector_text({"region": "east", "gpu": "a100"}) == "gpu=a100,region=east"

    def test_the_cluster_with_the_most_matching_executors_is_chosen(self) -> None:
        """cpu-east has two executors in region east, gpu-east one."""
        assert choose_cluster({"region": "east"}, LIVE) == "cpu-east"

    def test_a_tie_goes_to_the_first_name(self) -> None:
        assert choose_cluster({"gpu": "a100"}, LIVE) == "gpu-east"
        assert choose_cluster({"gpu": "a100"}, (A100_WEST, A100_EAST)) == "gpu-east", "whatever the order read"

    def test_one_executor_must_have_every_pair(self) -> None:
        """Labels of different executors of a cluster do not add up to a match."""
        split = (LiveExecutor(cluster="c", labels={"gpu": "a100"}), LiveExecutor(cluster="c", labels={"zone": "z"}))
        assert choose_cluster({"gpu": "a100", "zone": "z"}, split) is None
        assert choose_cluster({"gpu": "a100", "region": "west"}, LIVE) == "gpu-west"

    def test_nothing_matching_is_none_and_the_reason_names_what_is_live(self) -> None:
        assert choose_cluster({"gpu": "h100"}, LIVE) is None
        reason = no_match_reason({"gpu": "h100"}, (A100_EAST, CPU_EAST, LiveExecutor(cluster="bare")))
        assert reason == (
            "no live executor matches cluster selector gpu=h100; live clusters and their executors' labels: "
            "bare (no labels); cpu-east (region=east); gpu-east (gpu=a100,region=east)"
        )
        assert no_match_reason({"gpu": "h100"}, ()).endswith("gpu=h100: no executor is live")


class TestDefinitions:
    @pytest.mark.parametrize(
        ("selector", "problem"),
        [
            ({}, "must name at least one label"),
            ({"gpu": "a 100"}, "label 'gpu'='a 100': keys and values must be 1 to 128"),
            ({"g,pu": "x"}, "label 'g,pu'='x'"),
        ],
    )
    def test_a_bad_selector_is_named(self, selector: dict[str, str], problem: str) -> None:
        assert problem in (selector_problem(selector, "task 't'") or "")

    def test_a_task_with_a_cluster_and_a_selector_is_refused(self) -> None:
        with pytest.raises(DefinitionError, match="task 'anywhere': give a cluster or a cluster selector, not both"):
            task(cluster="east", cluster_selector={"gpu": "a100"})(cluster_workflows.anywhere.fn)

    def test_a_workflow_with_a_cluster_and_a_selector_is_refused(self) -> None:
        with pytest.raises(DefinitionError, match="give a cluster or a cluster selector, not both"):
            workflow(cluster="east", cluster_selector={"gpu": "a100"})(cluster_workflows.unplaced.fn)

    def test_a_launch_plan_with_a_cluster_and_a_selector_is_refused(self) -> None:
        with pytest.raises(DefinitionError, match=r"launch plan 'lp' .*not both"):
            LaunchPlan(cluster_workflows.unplaced, "lp", cluster="east", cluster_selector={"gpu": "a100"})

    def test_a_bad_selector_of_a_workflow_is_refused(self) -> None:
        with pytest.raises(DefinitionError, match="a cluster selector must name at least one label"):
            workflow(cluster_selector={})(cluster_workflows.unplaced.fn)

    def test_the_selector_is_part_of_the_spec_and_version(self) -> None:
        spec = cluster_workflows.eastern_by_label.spec
        assert spec.cluster_selector == {"region": "east"}
        assert spec.tasks[cluster_workflows.on_a100.name].cluster_selector == {"gpu": "a100"}
        other = workflow(cluster_selector={"region": "west"})(cluster_workflows.eastern_by_label.fn)
        assert other.spec.version != spec.version
        assert isinstance(cluster_workflows.anywhere.spec.cluster_selector, msgspec.UnsetType), "left out: unchanged"

    def test_plait_run_names_a_bad_selector_item(self) -> None:
        assert selector_option("gpu=a100, region=east") == {"gpu": "a100", "region": "east"}
        assert selector_option(None) is None
        with pytest.raises(InputError, match="--cluster-selector: label 'gpu' must look like key=value"):
            selector_option("gpu")


class TestPrecedence:
    def test_a_tasks_selector_chooses_its_cluster_and_the_choice_is_recorded(self) -> None:
        event = launched(resolved(cluster_workflows.on_gpu))
        assert event.selected_clusters == {"gpu=a100": "gpu-east"}
        assert queued_clusters(resolved(cluster_workflows.on_gpu)) == {"on_a100": "gpu-east"}

    def test_each_level_keeps_its_own_choice(self) -> None:
        """The workflow's selector places ``anywhere``; ``in_east`` names its cluster; ``on_a100`` has its own."""
        clusters = queued_clusters(resolved(cluster_workflows.eastern_by_label))
        assert clusters == {"anywhere": "cpu-east", "in_east": "east", "on_a100": "gpu-east"}

    def test_a_launch_cluster_wins_over_the_workflows_selector_which_is_then_not_resolved(self) -> None:
        """Nothing matches region=east among the live executors, but the launch's cluster overrides it."""
        event = launched(resolved(cluster_workflows.eastern_by_label, (A100_WEST,), cluster="gpu"))
        assert event.selected_clusters == {"gpu=a100": "gpu-west"}
        clusters = queued_clusters(resolved(cluster_workflows.eastern_by_label, (A100_WEST,), cluster="gpu"))
        assert clusters == {"anywhere": "gpu", "in_east": "east", "on_a100": "gpu-west"}

    def test_a_launch_selector_wins_over_the_workflows_cluster(self) -> None:
        clusters = queued_clusters(resolved(cluster_workflows.northern, selector={"region": "south"}))
        assert clusters == {"anywhere": "south-1", "in_east": "east"}

    def test_a_launch_plans_selector_wins_over_the_workflows_cluster(self) -> None:
        plan = cluster_workflows.northern_by_label.spec
        assert launched(resolved(cluster_workflows.northern, plan=plan)).cluster_selector == {"region": "south"}
        assert queued_clusters(resolved(cluster_workflows.northern, plan=plan)) == {
            "anywhere": "south-1",
            "in_east": "east",
        }

    def test_the_launchs_cluster_wins_over_its_plans_selector(self) -> None:
        plan = cluster_workflows.northern_by_label.spec
        clusters = queued_clusters(resolved(cluster_workflows.northern, (), plan=plan, cluster="gpu"))
        assert clusters == {"anywhere": "gpu", "in_east": "east"}


class TestRefusals:
    def test_a_launch_with_a_cluster_and_a_selector_is_rejected(self) -> None:
        with pytest.raises(Rejected, match="launch: give a cluster or a cluster selector, not both"):
            decide(None, resolved(cluster_workflows.unplaced, cluster="east", selector={"gpu": "a100"}))

    def test_a_selector_nothing_live_matches_is_rejected_naming_it_and_what_is_live(self) -> None:
        with pytest.raises(Rejected) as refused:
            decide(None, resolved(cluster_workflows.on_gpu, (CPU_EAST,)))
        assert str(refused.value) == (
            f"launching workflow '{cluster_workflows.on_gpu.name}': no live executor matches cluster selector "
            "gpu=a100; live clusters and their executors' labels: cpu-east (region=east)"
        )


class TestReplay:
    def test_the_recorded_choice_decides_whatever_is_live_later(self) -> None:
        """Replaying the launch event (through its encoding) gives the same clusters, with no executor read."""
        event = launched(resolved(cluster_workflows.eastern_by_label))
        decoded = msgspec.json.decode(msgspec.json.encode(event), type=ExecutionLaunched)
        state = launch(decoded, AT, "launch")
        assert state.selected_clusters == {"gpu=a100": "gpu-east", "region=east": "cpu-east"}
        by_task = {name.rsplit(".", 1)[-1]: cluster_of_task(state, name) for name in state.workflow.tasks}
        assert by_task == {"anywhere": "cpu-east", "in_east": "east", "on_a100": "gpu-east"}

    def test_an_old_launch_event_decodes_with_no_selector(self) -> None:
        event = launched(resolved(cluster_workflows.unplaced))
        raw = msgspec.to_builtins(event)
        del raw["cluster_selector"], raw["selected_clusters"]
        old = msgspec.convert(raw, ExecutionLaunched)
        assert (old.cluster_selector, old.selected_clusters) == ({}, {})

    def test_a_relaunch_keeps_its_originals_selector_and_chooses_again_among_the_live(self) -> None:
        first = decide_batch(None, [resolved(cluster_workflows.unplaced, selector={"gpu": "a100"})], AT)
        assert first.state is not None
        again = launched(resolved(cluster_workflows.unplaced, (A100_WEST,), original=first.state, relaunch_of="e"))
        assert again.cluster_selector == {"gpu": "a100"}
        assert again.selected_clusters == {"gpu=a100": "gpu-west"}


def test_an_executor_announcing_a_cluster_no_subject_can_name_is_never_chosen() -> None:
    """A hostile or broken announcement (``a.b`` would split the dispatch subject) cannot place work."""
    bad = LiveExecutor(cluster="a.b", labels={"gpu": "a100"})
    assert select_clusters([{"gpu": "a100"}], (bad, bad, A100_WEST)) == {"gpu=a100": "gpu-west"}
    assert (
        select_clusters([{"gpu": "a100"}], (bad,))
        == "no live executor matches cluster selector gpu=a100: no executor is live"
    )
