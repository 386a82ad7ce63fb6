"""Partitioning the commands stream (``plait.protocol.partitions``): its subject transform, the consumer of each
partition (a pinned-client priority group: one replica at a time, another once it falls silent), and the checks
that a replica's setting matches the deployment's."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, SubjectTransform

from plait.adapters.connection import authenticated, route_of
from plait.adapters.pull import ensure_consumer
from plait.errors import InputError
from plait.protocol import partitions as parts
from plait.protocol import subjects

_NANOS = 1_000_000_000


class PartitionsMismatch(InputError):
    """A replica set to another number of partitions than the commands stream is split in."""


async def partitions_of_stream(js: JetStreamContext) -> int:
    """How many partitions the commands stream is split in (0: not partitioned)."""
    transform = (await js.stream_info(subjects.COMMANDS_STREAM)).config.subject_transform
    source, destination = (transform.src, transform.dest) if transform else ("", "")
    try:
        return parts.partitions_of_transform(source, destination)
    except ValueError as exc:
        raise PartitionsMismatch(str(exc)) from exc


def check_matches(wanted: int, found: int) -> None:
    """``PartitionsMismatch`` unless a replica set to ``wanted`` partitions may serve a stream split in ``found``:
    the same number, or a stream not partitioned yet (the replica partitions it). A stream's partitions are not
    changed under running replicas: a command stored in a partition no consumer reads would wait for ever."""
    if found in (0, wanted):
        return
    raise PartitionsMismatch(
        f"PLAIT_SCHEDULER_PARTITIONS is {wanted} but the commands stream is split in {found} partitions: set it "
        f"to {found} on every scheduler replica (changing the number of partitions of a deployment is not supported, "
        "see docs/scaling.md)"
    )


async def partition_stream(
    js: JetStreamContext, partitions: int, config: ConsumerConfig, pin_seconds: float
) -> list[str]:
    """Split the commands stream in ``partitions`` (a no-op once it is) and return the consumer of each partition,
    each made like ``config`` with its partition's filter, pinned to one replica at a time (``pin_seconds``: how
    long the pinned replica may stay silent before another takes over).

    The order keeps every command consumed: the unpartitioned consumer is narrowed to what no partition takes
    (commands stored before the stream was partitioned, subjects too short to be transformed: the consumers of a
    work queue may not overlap), then the partitions' consumers are made, and only then does the stream start
    storing commands in partitions.
    """
    found = await partitions_of_stream(js)
    check_matches(partitions, found)
    if found == 0 and authenticated(js):  # a confined service may not change a stream: the operator's step
        raise PartitionsMismatch(
            f"PLAIT_SCHEDULER_PARTITIONS is {partitions} but the commands stream is not partitioned, and this "
            f"replica may not change it: run `plait streams ensure --partitions {partitions}` with the "
            "operator's NATS credentials (docs/scaling.md)"
        )
    unpartitioned = await ensure_consumer(js, subjects.COMMANDS_STREAM, config)
    if unpartitioned.config.filter_subjects != parts.LEFT_UNPARTITIONED:
        narrowed = dataclasses.replace(
            unpartitioned.config, filter_subject=None, filter_subjects=parts.LEFT_UNPARTITIONED
        )
        await js.add_consumer(subjects.COMMANDS_STREAM, narrowed)
    names = []
    for partition in range(partitions):
        name = parts.consumer_name(partition)
        pinned = dataclasses.replace(config, durable_name=name, filter_subject=parts.partition_subject(partition))
        await _ensure_pinned_consumer(js, pinned, pin_seconds)
        names.append(name)
    await set_partitions(js, partitions)  # a no-op once it is split
    check_matches(partitions, await partitions_of_stream(js))  # another replica partitioned it meanwhile
    return names


async def set_partitions(js: JetStreamContext, partitions: int) -> bool:
    """Split the commands stream in ``partitions`` (its subject transform); True when it was not split yet. Until a
    partitioned replica has made the partitions' consumers, the commands stored in them wait (the unpartitioned
    consumer still takes them, its filter taking every command until a partitioned replica narrows it)."""
    check_matches(partitions, await partitions_of_stream(js))
    info = await js.stream_info(subjects.COMMANDS_STREAM)
    if info.config.subject_transform is not None:
        return False
    transform = SubjectTransform(src=parts.TRANSFORM_SOURCE, dest=parts.transform_destination(partitions))
    await js.update_stream(dataclasses.replace(info.config, subject_transform=transform))
    return True


async def unpartition_consumer(js: JetStreamContext, name: str, subject: str) -> None:
    """Give the unpartitioned consumer back every command (``subject``) once the stream is no longer partitioned
    (its transform and partition consumers removed as docs/scaling.md says); a no-op otherwise."""
    try:
        info = await js.consumer_info(subjects.COMMANDS_STREAM, name)
    except nats.js.errors.NotFoundError:
        return
    if info.config.filter_subjects == parts.LEFT_UNPARTITIONED:
        restored = dataclasses.replace(info.config, filter_subject=subject, filter_subjects=None)
        await js.add_consumer(subjects.COMMANDS_STREAM, restored)


async def _ensure_pinned_consumer(js: JetStreamContext, config: ConsumerConfig, pin_seconds: float) -> None:
    """The durable consumer ``config`` names, with a pinned-client priority group, made or brought to this
    release's ack wait, delivery limit and pin timeout. nats-py's consumer config has no priority fields: the
    requests are made here."""
    assert config.durable_name is not None  # noqa: S101  an invariant of this code, not a check of input
    wanted: dict[str, Any] = {
        **config.as_dict(),
        "priority_groups": [parts.PRIORITY_GROUP],
        "priority_policy": "pinned_client",
        "priority_timeout": int(pin_seconds * _NANOS),
    }
    try:
        found = (await _api(js, f"CONSUMER.INFO.{subjects.COMMANDS_STREAM}.{config.durable_name}"))["config"]
    except nats.js.errors.NotFoundError:
        await _api(js, f"CONSUMER.CREATE.{subjects.COMMANDS_STREAM}.{config.durable_name}", _creation(wanted, "create"))
        return
    if any(found.get(key) != wanted.get(key) for key in _KEPT_CURRENT):
        await _api(js, f"CONSUMER.CREATE.{subjects.COMMANDS_STREAM}.{config.durable_name}", _creation(wanted, "update"))


_KEPT_CURRENT = ("ack_wait", "max_deliver", "priority_timeout", "priority_policy")
"""What a release brings an existing partition consumer to (its filter and name never change)."""


def _creation(config: dict[str, Any], action: str) -> dict[str, Any]:
    return {"stream_name": subjects.COMMANDS_STREAM, "config": config, "action": action}


async def _api(js: JetStreamContext, call: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JetStream API request (``$JS.API.<call>``) and its answer; an error answer raised as nats-py does."""
    route = route_of(js)
    body = json.dumps(request).encode() if request is not None else b""
    try:
        reply = await route.nc.request(f"{route.api_prefix}.{call}", body, timeout=route.timeout)
    except nats.errors.NoRespondersError as exc:
        raise nats.js.errors.ServiceUnavailableError from exc
    answer: dict[str, Any] = json.loads(reply.data)
    if "error" in answer:
        raise nats.js.errors.APIError.from_error(answer["error"])
    return answer


async def unpin(js: JetStreamContext, consumer: str) -> None:
    """Unpin the replica pinned to a partition's consumer: the next message goes to another replica waiting."""
    await _api(js, f"CONSUMER.UNPIN.{subjects.COMMANDS_STREAM}.{consumer}", {"group": parts.PRIORITY_GROUP})


async def waiting_pulls(js: JetStreamContext, consumer: str) -> int:
    """How many pull requests wait on a partition's consumer (its pinned replica's and the others' standing by)."""
    info = await js.consumer_info(subjects.COMMANDS_STREAM, consumer)
    return info.num_waiting or 0
