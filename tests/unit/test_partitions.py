"""The pure side of partitioned command consumption: the stream's transform, reading it back, the partition of an
execution (as the server computes it), and each replica's fair share."""

from __future__ import annotations

import pytest

from plait.protocol import partitions as parts
from plait.protocol.subjects import (
    execution_of_command_subject,
    kind_of_command_subject,
    scope_of_command_subject,
    without_partition,
)


def test_the_transform_reads_back_as_its_number_of_partitions() -> None:
    for count in (1, 8, parts.MAX_PARTITIONS):
        assert parts.partitions_of_transform(parts.TRANSFORM_SOURCE, parts.transform_destination(count)) == count
    assert parts.partitions_of_transform(None, None) == 0


def test_a_transform_plait_did_not_set_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"a subject transform plait does not know: plait\.cmd\.> -> x\.>"):
        parts.partitions_of_transform("plait.cmd.>", "x.>")
    with pytest.raises(ValueError, match="does not know"):
        parts.partitions_of_transform(parts.TRANSFORM_SOURCE, parts.transform_destination(4).replace("1,2,3", "1,2"))


@pytest.mark.parametrize("count", [-1, parts.MAX_PARTITIONS + 1])
def test_a_number_of_partitions_out_of_range_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match=f"0 \\(not partitioned\\) to {parts.MAX_PARTITIONS}, got {count}"):
        parts.check_partitions(count)


def test_the_partition_of_an_execution_is_the_servers_fnv1a_of_its_three_tokens() -> None:
    # FNV-1a 32 of "defaultdevelopmentexec-1" (the tokens joined with nothing, as nats-server's partition() does)
    digest = 0x811C9DC5
    for byte in b"defaultdevelopmentexec-1":
        digest = ((digest ^ byte) * 0x01000193) % 2**32
    assert parts.partition_of("default", "development", "exec-1", 7) == digest % 7
    # a dotted name is one token with ':' in place of '.', as on the subject the server hashes
    assert parts.partition_of("a.b", "d", "e", 16) == parts.partition_of("a:b", "d", "e", 16)


def test_executions_spread_over_the_partitions() -> None:
    counts = [0] * 8
    for number in range(8000):
        counts[parts.partition_of("default", "development", f"exec-{number}", 8)] += 1
    assert min(counts) > 900 and max(counts) < 1100


def test_a_stored_partitioned_subject_names_its_execution_and_kind() -> None:
    assert execution_of_command_subject("plait.cmd.p.d.e.3.result") == ("p", "d", "e")
    assert kind_of_command_subject("plait.cmd.p.d.e.3.result") == "result"
    assert without_partition("plait.cmd.p.d.e.3.result") == "plait.cmd.p.d.e.result"
    assert execution_of_command_subject("plait.cmd.p.d.e.result") == ("p", "d", "e")
    assert kind_of_command_subject("plait.cmd.p.d.e.result") == "result"
    assert without_partition("plait.cmd.p.d.e.result") == "plait.cmd.p.d.e.result"
    # a task's report carries its scope after the kind, stored on eight tokens when partitioned
    assert execution_of_command_subject("plait.cmd.p.d.e.3.result.a1f") == ("p", "d", "e")
    assert kind_of_command_subject("plait.cmd.p.d.e.3.result.a1f") == "result"
    assert scope_of_command_subject("plait.cmd.p.d.e.3.result.a1f") == "a1f"
    assert scope_of_command_subject("plait.cmd.p.d.e.started.n2c") == "n2c"
    assert scope_of_command_subject("plait.cmd.p.d.e.3.result") == ""
    assert without_partition("plait.cmd.p.d.e.3.result.a1f") == "plait.cmd.p.d.e.result.a1f"
    # any other command on seven tokens is none
    assert execution_of_command_subject("plait.cmd.p.d.e.3.abort.x") is None
    assert execution_of_command_subject("plait.cmd.p.d.e.abort.x") is None
    assert execution_of_command_subject("plait.cmd.p.d.e.x.result") is None
    assert parts.is_partition_consumer("scheduler-p12") and not parts.is_partition_consumer("scheduler")


def test_the_partitions_and_the_unpartitioned_consumer_take_every_subject_once() -> None:
    def matches(pattern: str, subject: str) -> bool:
        want, got = pattern.split("."), subject.split(".")
        if want[-1] == ">":
            return len(got) >= len(want) and all(w in ("*", g) for w, g in zip(want[:-1], got, strict=False))
        return len(got) == len(want) and all(w in ("*", g) for w, g in zip(want, got, strict=True))

    filters = [*parts.LEFT_UNPARTITIONED, *(parts.partition_subject(p) for p in range(4))]
    stored = ["plait.cmd.a", "plait.cmd.a.b.c", "plait.cmd.p.d.e.result", "plait.cmd.p.d.e.2.result"]
    stored += ["plait.cmd.p.d.e.0.result.extra", "plait.cmd.p.d.e.3.x.y.z"]
    stored += ["plait.cmd.p.d.e.started.a1f", "plait.cmd.p.d.e.result.n2c"]  # a task's, stored before partitioning
    for subject in stored:
        assert sum(matches(f, subject) for f in filters) == 1, subject


def test_the_fair_share_covers_every_partition() -> None:
    for count in (1, 4, 7, 16):
        for replicas in (1, 2, 3, 5):
            assert parts.fair_share(count, replicas) * replicas >= count
    assert parts.fair_share(8, 0) == 8  # no replica announced yet (not even this one): take all


def test_a_replica_beyond_its_share_gives_up_the_partition_it_took_last() -> None:
    assert parts.one_to_release([3, 1, 0], 4, 2) == 0
    assert parts.one_to_release([3, 1], 4, 2) is None
    assert parts.one_to_release([3, 1, 0], 4, 1) is None
    assert parts.one_to_release([2, 1], 3, 2) is None  # 3 over 2: one replica holds 2
