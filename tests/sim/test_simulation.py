"""Thousands of seeded runs of the simulator: after every step the invariants hold, every acknowledged command
is decided or dead-lettered, and once faults stop every execution ends.

``PLAIT_SIM_SEEDS``: seeds per profile (default 3000). ``PLAIT_SIM_SEED``: run only that seed (to replay one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from plait import codec
from plait.core.events import NodeSucceeded
from plait.core.ids import canonical_encoding
from plait.core.values import as_ref
from plait.replay import replay
from tests.helpers.processes import REPO
from tests.sim.world import PROFILES, simulate

SEEDS = int(os.environ.get("PLAIT_SIM_SEEDS", "3000"))
ONLY_SEED = os.environ.get("PLAIT_SIM_SEED")


def seeds() -> range:
    return range(int(ONLY_SEED), int(ONLY_SEED) + 1) if ONLY_SEED else range(SEEDS)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_seed_keeps_the_invariants_and_ends_every_execution(profile: str) -> None:
    """A failing seed stops the test with the seed and the one command that replays it."""
    totals: dict[str, int] = {}
    for seed in seeds():
        world = simulate(seed, profile)
        for name, count in world.counts.items():
            totals[name] = totals.get(name, 0) + count
    print(f"{profile}: {len(seeds())} seeds, {totals}")


def test_one_seed_replays_to_the_same_log_byte_for_byte() -> None:
    first, second = simulate(7, "replicas"), simulate(7, "replicas")
    assert first.log_digest() == second.log_digest()
    assert first.counts == second.counts and first.counts["decisions"] > 0
    assert simulate(8, "replicas").log_digest() != first.log_digest()


def test_the_replay_command_reproduces_a_seed_in_another_process() -> None:
    """Another process, with other hash seeds: the same seed still gives the same log."""
    world = simulate(3, "one_replica")
    done = subprocess.run(
        [sys.executable, "-m", "tests.sim", "--seed", "3", "--profile", "one_replica"],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"log {world.log_digest()}")


def test_faults_are_injected() -> None:
    """The profiles do inject what they claim: a simulator that injects nothing proves nothing."""
    counts: dict[str, int] = {}
    for seed in range(200):
        for name, count in simulate(seed, "one_replica").counts.items():
            counts[name] = counts.get(name, 0) + count
    for fault in (
        "replica_crashes",
        "acks_lost",
        "acks_forgotten",
        "executor_crashes",
        "held_results_lost",
        "results_sent_together",
        "chunk_attempts_skipped",
        "attempts_handed_on",
        "timers_fired",
    ):
        assert counts[fault] > 0, counts


def test_the_timeouts_profile_times_out_attempts_and_executions_and_kills_them() -> None:
    reasons: Counter[str] = Counter()
    killed = 0
    for seed in range(100):
        world = simulate(seed, "timeouts")
        killed += world.counts["attempts_killed"]
        for records in world.log.by_subject.values():
            state = replay(records)
            reasons.update(
                a.error.message for node in state.nodes.values() for a in node.all_attempts() if a.error is not None
            )
            if state.error is not None:
                reasons[f"execution: {state.error.message}"] += 1
    assert reasons["timed out after 5 s"] > 0, reasons
    assert reasons["execution: workflow timed out after 8 s"] > 0, reasons
    assert killed > 0


def test_the_finish_and_aborts_profile_skips_nodes_and_records_stopped_attempts() -> None:
    seen: Counter[str] = Counter()
    for seed in range(100):
        for records in simulate(seed, "finish_and_aborts").log.by_subject.values():
            state = replay(records)
            seen.update(node.status for node in state.nodes.values())
            seen.update(f"attempt {a.status}" for node in state.nodes.values() for a in node.all_attempts())
            seen[f"execution {state.status}"] += 1
    assert seen["skipped"] > 0 and seen["attempt stopped"] > 0, seen
    assert seen["execution aborted"] > 0 and seen["execution failed"] > 0, seen


def test_the_stored_values_profile_passes_references_and_ends_executions_whose_objects_are_lost() -> None:
    """Every output an attempt reports is within the inline limit or a reference, and an attempt whose input's
    object was lost fails as a system error (``ValueMissing``) rather than hangs (every seed also ends)."""
    limit = PROFILES["stored_values"].faults.inline_value_limit
    counts: Counter[str] = Counter()
    missing = 0
    for seed in range(200):
        world = simulate(seed, "stored_values")
        counts.update(world.counts)
        for records in world.log.by_subject.values():
            for record in records:
                for event in codec.decision_decoder.decode(record.data).events:
                    if isinstance(event, NodeSucceeded) and event.attempt_id:
                        for value in event.outputs.values():
                            assert as_ref(value) is not None or len(canonical_encoding(value)) <= limit, value
            attempts = [
                a for node in replay(records).nodes.values() for a in node.all_attempts() if a.error is not None
            ]
            missing += sum(a.error is not None and a.error.error_type == "ValueMissing" for a in attempts)
    assert counts["values_stored"] > 0 and counts["objects_lost"] > 0 and missing > 0, (counts, missing)


def test_the_dynamic_profile_generates_nodes_and_fails_them() -> None:
    seen: Counter[str] = Counter()
    for seed in range(100):
        for records in simulate(seed, "dynamic").log.by_subject.values():
            state = replay(records)
            generated = [node for node in state.nodes.values() if node.dynamic_of]
            seen["generated"] += len(generated)
            seen["nested"] += sum(1 for node in generated if node.generated is not None)
            seen.update(f"generated {node.status}" for node in generated)
            seen[f"execution {state.status}"] += 1
    assert seen["generated succeeded"] > 0 and seen["generated failed"] > 0 and seen["nested"] > 0, seen
    assert seen["execution succeeded"] > 0 and seen["execution failed"] > 0, seen


def test_the_clusters_profile_records_the_clusters_its_selectors_chose() -> None:
    """Launches with cluster selectors record the same choice in every seed, and their attempts go there."""
    chosen: Counter[str] = Counter()
    for seed in range(100):
        for records in simulate(seed, "clusters").log.by_subject.values():
            state = replay(records)
            chosen.update(f"{selector}->{cluster}" for selector, cluster in state.selected_clusters.items())
    assert set(chosen) == {"gpu=a100->gpu-east", "region=east->cpu-east"}, chosen
