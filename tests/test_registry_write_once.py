"""A registered version is written once and never changes: the registry reads the record its write-once publish
stored (expecting the subject empty), not one appended after it by anyone allowed to publish there (a project's
client on plait.reg.<p>.<d>.>, a @dynamic task's pod on plait.reg.<p>.<d>.task.>), and no record whose body names
another entity than its subject."""

from __future__ import annotations

import uuid

import msgspec
import nats
import pytest

from plait import codec
from plait.adapters.registry import Registry
from plait.core.events import TaskRegistered
from plait.core.model import TaskTarget
from plait.errors import NotFound
from plait.protocol import subjects
from tests import workflows


def tenant() -> tuple[str, str]:
    return "registry", f"d{uuid.uuid4().hex[:10]}"


async def test_a_record_appended_after_a_registration_changes_nothing_read(js: nats.js.JetStreamContext) -> None:
    project, domain = tenant()
    spec = workflows.square.spec
    assert await Registry(js).register(TaskRegistered(project, domain, spec)) is True
    subject = subjects.registration_subject(project, domain, "task", spec.name, spec.version)
    other = msgspec.structs.replace(spec, target=TaskTarget(module="os", qualname="system"), secrets=("db-password",))
    await js.publish(subject, codec.encode(TaskRegistered(project, domain, other)), stream=subjects.EVENTS_STREAM)

    read = await Registry(js).task(project, domain, spec.name, spec.version)  # a fresh scheduler's or executor's
    assert (read.target, read.secrets) == (spec.target, spec.secrets)
    assert await Registry(js).register(TaskRegistered(project, domain, spec)) is False, "registered as it was"


async def test_a_record_naming_another_entity_than_its_subject_is_not_a_registration(
    js: nats.js.JetStreamContext,
) -> None:
    project, domain = tenant()
    spec = workflows.square.spec
    subject = subjects.registration_subject(project, domain, "task", spec.name, spec.version)
    elsewhere = TaskRegistered("another-project", domain, spec)
    await js.publish(subject, codec.encode(elsewhere), stream=subjects.EVENTS_STREAM)
    with pytest.raises(NotFound, match="holds the registration of another entity"):
        await Registry(js).task(project, domain, spec.name, spec.version)
