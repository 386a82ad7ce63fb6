"""Partitioned command consumption: the commands stream stores each command on a subject that ends with its
execution's partition, and each partition has its own consumer, taken by one scheduler replica at a time.

A client sends ``plait.cmd.<project>.<domain>.<execution>.<kind>`` as always; the stream's subject transform stores
it as ``plait.cmd.<project>.<domain>.<execution>.<partition>.<kind>``, the partition being the server's FNV-1a hash
of the project, domain and execution tokens modulo the number of partitions (``partition_of``). Every command of
an execution is in one partition, so one replica decides it, from its cached state, with no other to conflict.

The transform takes every subject of six tokens or more, so whatever a client sends there lands in a partition,
where a replica reads it (and dead-letters it if it is no command); shorter ones, and commands stored before the
stream was partitioned, are left to the unpartitioned consumer (``LEFT_UNPARTITIONED``).
"""

from __future__ import annotations

import math
import re

from plait.protocol.subjects import COMMANDS_ROOT, SCOPED_KINDS, token

MAX_PARTITIONS = 256
PRIORITY_GROUP = "scheduler"  # the pinned-client priority group of every partition consumer
TRANSFORM_SOURCE = f"{COMMANDS_ROOT}.*.*.*.>"  # every subject of six tokens or more
LEFT_UNPARTITIONED = [
    *(COMMANDS_ROOT + ".*" * tokens for tokens in (1, 2, 3, 4)),
    *(f"{COMMANDS_ROOT}.*.*.*.{kind}.*" for kind in sorted(SCOPED_KINDS)),
]
"""What the unpartitioned consumer reads once the stream is partitioned: subjects too short to be transformed, and
commands as sent (a task's scoped reports too), stored before the stream was partitioned. (The consumers of a work
queue may not overlap.)"""

_DESTINATION = re.compile(
    r"^" + re.escape(COMMANDS_ROOT) + r"\.\{\{wildcard\(1\)\}\}\.\{\{wildcard\(2\)\}\}\.\{\{wildcard\(3\)\}\}"
    r"\.\{\{partition\((\d+),1,2,3\)\}\}\.>$"
)
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def check_partitions(partitions: int) -> int:
    """``partitions`` if it is a number of partitions plait can use: 0 (not partitioned) to ``MAX_PARTITIONS``."""
    if not 0 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"the number of partitions must be 0 (not partitioned) to {MAX_PARTITIONS}, got {partitions}")
    return partitions


def transform_destination(partitions: int) -> str:
    """The destination of the commands stream's subject transform (its source is ``TRANSFORM_SOURCE``)."""
    if check_partitions(partitions) < 1:
        raise ValueError("an unpartitioned stream has no subject transform")
    wildcards = ".".join(f"{{{{wildcard({index})}}}}" for index in (1, 2, 3))
    return f"{COMMANDS_ROOT}.{wildcards}.{{{{partition({partitions},1,2,3)}}}}.>"


def partitions_of_transform(source: str | None, destination: str | None) -> int:
    """How many partitions a commands stream with this subject transform has (0: none); ``ValueError`` for a
    transform plait did not set."""
    if not source and not destination:
        return 0
    found = _DESTINATION.match(destination or "")
    if source != TRANSFORM_SOURCE or found is None:
        raise ValueError(f"the commands stream has a subject transform plait does not know: {source} -> {destination}")
    return check_partitions(int(found.group(1)))


def partition_subject(partition: int) -> str:
    """The filter of partition ``partition``'s consumer."""
    return f"{COMMANDS_ROOT}.*.*.*.{partition}.>"


def consumer_name(partition: int) -> str:
    return f"scheduler-p{partition}"


def is_partition_consumer(consumer: str) -> bool:
    """Whether ``consumer`` is a partition's (it delivers subjects stored with their partition)."""
    return consumer.startswith("scheduler-p") and consumer.removeprefix("scheduler-p").isdigit()


def partition_of(project: str, domain: str, execution_id: str, partitions: int) -> int:
    """The partition the stream stores the commands of an execution in (the server's ``partition(n,1,2,3)``: FNV-1a
    over the three subject tokens, joined with nothing)."""
    if check_partitions(partitions) < 1:
        raise ValueError("an unpartitioned stream has no partitions")
    key = f"{token(project, 'project')}{token(domain, 'domain')}{token(execution_id, 'execution id')}"
    digest = _FNV_OFFSET
    for byte in key.encode():
        digest = ((digest ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return digest % partitions


def fair_share(partitions: int, replicas: int) -> int:
    """The most partitions one of ``replicas`` live replicas should hold."""
    return math.ceil(partitions / max(replicas, 1))


def one_to_release(held: list[int], partitions: int, replicas: int) -> int | None:
    """A partition a replica holding ``held`` (oldest first) should give up for another to take: the newest it took,
    while it holds more than its fair share; None when it holds no more than that."""
    if len(held) <= fair_share(partitions, replicas):
        return None
    return held[-1]
