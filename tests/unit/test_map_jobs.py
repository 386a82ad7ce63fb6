"""Map item attempts in batches, each batch one Indexed Job: what the Job carries (checked as an API server would),
how a pod finds its attempt in it, and how the executor groups the items it takes."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.core.dispatch import Dispatch
from plait.core.ids import item_attempt_id
from plait.core.kubernetes_options import KubernetesOptions
from plait.core.model import TaskSpec
from plait_executor.attempt import AttemptOutcome
from plait_executor.kubernetes.batches import (
    attempts_of_job,
    batch_name_key,
    batch_of,
    decode_batch,
    encode_batch,
    fits,
    is_map_item,
)
from plait_executor.kubernetes.batching import MapBatcher, Placed
from plait_executor.kubernetes.manifests import MAP_JOB_NAME_LENGTH, AttemptIdentity, map_job_manifest
from plait_executor.kubernetes.runtime import read_batch_item
from tests import kubernetes_workflows
from tests.helpers.kube_api.validation import is_dns1123_label, job_causes

EXECUTION = "01kbmw3c2v5q8x7y9z0a1b2c3d"
TASK: TaskSpec = kubernetes_workflows.double.spec


def item(index: int, attempt: int = 1, **inputs: object) -> Dispatch:
    return Dispatch(
        execution_id=EXECUTION,
        project="analytics",
        domain="production",
        node="double",
        attempt_id=item_attempt_id(EXECUTION, "double", index, attempt),
        attempt=attempt,
        task=TASK,
        inputs={"x": index, "scale": 3, **inputs},
        decision_sequence=10 + index,
    )


class TestBatches:
    def test_each_index_gives_back_its_items_dispatch(self) -> None:
        dispatches = [item(0), item(1), item(5, attempt=2), item(7, scale=4)]
        batch = decode_batch(encode_batch(batch_of(dispatches)))
        assert [batch.dispatch_at(index) for index in range(4)] == dispatches
        assert batch.attempts == [dispatch.attempt_id for dispatch in dispatches]
        with pytest.raises(IndexError, match="completion index 4"):
            batch.dispatch_at(4)

    def test_inputs_the_items_share_travel_once(self) -> None:
        shared = "x" * 10_000
        batch = batch_of([item(index, shared=shared) for index in range(20)])
        assert len(encode_batch(batch)) < 2 * len(shared)
        assert batch.rest[0].inputs == {"x": 1}

    def test_values_equal_in_python_but_not_as_values_are_kept_apart(self) -> None:
        batch = batch_of([item(0, flag=1), item(1, flag=True), item(2, flag=1.0)])
        assert [batch.dispatch_at(index).inputs["flag"] for index in range(3)] == [1, True, 1.0]
        assert [type(batch.dispatch_at(index).inputs["flag"]) for index in range(3)] == [int, bool, float]

    def test_only_items_of_one_map_node_share_a_batch(self) -> None:
        other_node = Dispatch(**{**_fields(item(1)), "node": "other"})
        other_task = Dispatch(**{**_fields(item(1)), "task": kubernetes_workflows.square.spec})
        assert fits(item(0), item(1)) and not fits(item(0), other_node) and not fits(item(0), other_task)
        with pytest.raises(ValueError, match="cannot share a batch"):
            batch_of([item(0), other_node])
        assert is_map_item(item(0)) and not is_map_item(Dispatch(**{**_fields(item(0)), "attempt_id": "e/n/1"}))


def _fields(dispatch: Dispatch) -> dict[str, object]:
    return {field: getattr(dispatch, field) for field in dispatch.__struct_fields__}


def identity(attempts: Sequence[str]) -> AttemptIdentity:
    return AttemptIdentity(
        project="analytics",
        domain="production",
        execution_id=EXECUTION,
        node="double",
        attempt_id=batch_name_key(attempts),
        attempt=1,
        queue="default",
        cluster="gpu-east",
    )


class TestMapJobManifest:
    attempts = [item(index).attempt_id for index in range(100)]
    options = KubernetesOptions(image="registry.example.com/team/pipeline:1.4.2", env={"PLAIT_DISPATCH_BATCH": "{}"})

    def test_a_batch_is_one_indexed_job_the_api_server_accepts(self) -> None:
        job = map_job_manifest(identity(self.attempts), self.options, self.attempts, timeout_seconds=60)
        assert job_causes(job) == []
        spec = job["spec"]
        assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 100, 100)
        assert spec["backoffLimitPerIndex"] == 0, "a failed item fails its index alone; plait retries it"
        assert attempts_of_job(job) == self.attempts
        [container] = spec["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", "plait_executor.kubernetes.runtime", "--batch"]

    def test_the_same_batch_names_the_same_job_and_another_batch_another(self) -> None:
        name = map_job_manifest(identity(self.attempts), self.options, self.attempts)["metadata"]["name"]
        again = map_job_manifest(identity(self.attempts), self.options, self.attempts)["metadata"]["name"]
        fewer = map_job_manifest(identity(self.attempts[:5]), self.options, self.attempts[:5])["metadata"]["name"]
        assert name == again != fewer

    @given(st.text(min_size=1, max_size=300), st.integers(1, 99_999))
    def test_every_pods_hostname_is_a_valid_dns_label(self, first: str, size: int) -> None:
        """A pod of an Indexed Job is named after its Job and its index: the Job's name leaves room for it."""
        name = map_job_manifest(identity([first]), self.options, [first])["metadata"]["name"]
        assert len(name) <= MAP_JOB_NAME_LENGTH and is_dns1123_label(f"{name}-{size}")

    def test_an_unreadable_attempts_annotation_names_no_attempts(self) -> None:
        assert attempts_of_job({"metadata": {"annotations": {"plait.dev/attempts": "[1, 2"}}}) is None
        assert attempts_of_job({"metadata": {"annotations": {"plait.dev/attempts": "[1, 2]"}}}) is None
        assert attempts_of_job({"metadata": {}}) is None


class Jobs:
    """Makes each batch's Job (here: records it) and places its items by their order in it."""

    def __init__(self) -> None:
        self.made: list[list[str]] = []

    async def make(self, dispatches: Sequence[Dispatch]) -> dict[str, Placed]:
        self.made.append([dispatch.attempt_id for dispatch in dispatches])
        name = f"job-{len(self.made)}"
        return {dispatch.attempt_id: (name, index) for index, dispatch in enumerate(dispatches)}


class TestMapBatcher:
    async def test_items_taken_together_share_a_job_up_to_its_size(self) -> None:
        jobs, placed = Jobs(), {}
        async with anyio.create_task_group() as group:
            batcher = MapBatcher(group, jobs.make, window_seconds=3600, most_items=3)

            async def place(dispatch: Dispatch) -> None:
                placed[dispatch.attempt_id] = await batcher.place(dispatch)

            for index in range(6):
                group.start_soon(place, item(index))
        assert jobs.made == [[item(i).attempt_id for i in range(3)], [item(i).attempt_id for i in range(3, 6)]]
        assert placed[item(4).attempt_id] == ("job-2", 1)

    async def test_the_window_closes_a_batch_that_is_not_full(self) -> None:
        jobs = Jobs()
        async with anyio.create_task_group() as group:
            batcher = MapBatcher(group, jobs.make, window_seconds=0.0, most_items=100)
            assert await batcher.place(item(0)) == ("job-1", 0)
        assert jobs.made == [[item(0).attempt_id]]

    async def test_an_item_cancelled_while_its_batch_is_open_leaves_it(self) -> None:
        jobs = Jobs()
        async with anyio.create_task_group() as group:
            batcher = MapBatcher(group, jobs.make, window_seconds=3600, most_items=3)
            with anyio.move_on_after(0):
                await batcher.place(item(0))
            group.start_soon(batcher.place, item(1))
            group.start_soon(batcher.place, item(2))
            group.start_soon(batcher.place, item(3))
        assert jobs.made == [[item(i).attempt_id for i in (1, 2, 3)]]

    async def test_a_redelivered_item_waits_for_the_job_its_first_delivery_joined(self) -> None:
        jobs, placed = Jobs(), []
        with anyio.fail_after(10):  # twice in the batch, item 1 would fill it and leave item 2 waiting an hour
            async with anyio.create_task_group() as group:
                batcher = MapBatcher(group, jobs.make, window_seconds=3600, most_items=3)

                async def place(dispatch: Dispatch) -> None:
                    placed.append((dispatch.attempt_id, await batcher.place(dispatch)))

                for dispatch in (item(0), item(1), item(1), item(2)):  # item 1 redelivered while its batch is open
                    group.start_soon(place, dispatch)
        assert jobs.made == [[item(i).attempt_id for i in range(3)]], "one Job, each attempt once"
        assert sorted(placed) == sorted([(item(i).attempt_id, ("job-1", i)) for i in (0, 1, 1, 2)])

    async def test_a_redelivery_cancelled_leaves_its_first_delivery_in_the_batch(self) -> None:
        jobs = Jobs()
        async with anyio.create_task_group() as group:
            batcher = MapBatcher(group, jobs.make, window_seconds=3600, most_items=2)
            group.start_soon(batcher.place, item(0))
            await anyio.wait_all_tasks_blocked()
            with anyio.move_on_after(0):
                await batcher.place(item(0))
            group.start_soon(batcher.place, item(1))
        assert jobs.made == [[item(0).attempt_id, item(1).attempt_id]]

    async def test_items_of_other_nodes_go_to_other_batches(self) -> None:
        jobs = Jobs()
        other = Dispatch(**{**_fields(item(1)), "node": "other"})
        async with anyio.create_task_group() as group:
            batcher = MapBatcher(group, jobs.make, window_seconds=0.0)
            group.start_soon(batcher.place, item(0))
            group.start_soon(batcher.place, other)
        assert sorted(jobs.made) == sorted([[item(0).attempt_id], [other.attempt_id]])

    async def test_a_batch_too_large_for_one_variable_is_split(self) -> None:
        jobs = Jobs()
        async with anyio.create_task_group() as group:
            batcher = MapBatcher(group, jobs.make, window_seconds=0.0, most_bytes=3_000)
            for index in range(4):
                group.start_soon(batcher.place, item(index, note="n" * 1000 + str(index)))
        assert len(jobs.made) >= 2 and sum(map(len, jobs.made)) == 4

    async def test_a_job_that_cannot_be_made_fails_its_items_not_the_executor(self) -> None:
        async def broken(dispatches: Sequence[Dispatch]) -> dict[str, Placed]:
            raise RuntimeError("bug")

        async with anyio.create_task_group() as group:
            batcher = MapBatcher(group, broken, window_seconds=0.0)
            placed = await batcher.place(item(0))
        assert isinstance(placed, AttemptOutcome) and placed.error is not None
        assert (placed.error.kind, placed.error.error_type) == ("system", "JobNotMade")


class TestRuntimeInAMapPod:
    def test_a_pod_runs_the_attempt_at_its_completion_index(self, monkeypatch: pytest.MonkeyPatch) -> None:
        dispatches = [item(0), item(1), item(2)]
        monkeypatch.setenv("PLAIT_DISPATCH_BATCH", encode_batch(batch_of(dispatches)))
        monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
        assert read_batch_item() == dispatches[2]
        monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
        with pytest.raises(SystemExit, match="completion index 3 is not in a batch of 3"):
            read_batch_item()
        monkeypatch.delenv("JOB_COMPLETION_INDEX")
        with pytest.raises(SystemExit, match="JOB_COMPLETION_INDEX is '', not a completion index"):
            read_batch_item()
