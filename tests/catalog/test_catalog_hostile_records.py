"""The catalog's projection against records a project's client may publish on its own subjects
(plait.reg.<project>.<domain>.>, plait.cache.<project>.<domain>.>, deploy/nats/tenants.conf): each is kept aside
with its reason, changes no other tenant's rows, and the projection goes on past it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import msgspec
import pytest
from nats.aio.client import Client as NATS

from plait import codec, task, workflow
from plait.core.cachelog import CacheCleared, CacheFilled
from plait.core.decide import decide
from plait.core.events import TaskRegistered
from plait.protocol import subjects
from plait_catalog import CatalogService
from plait_catalog.known_workflows import KnownWorkflows
from plait_catalog.migrations import migrate
from plait_catalog.projection import StoredMessage, apply_batch, stored_offset
from tests import workflows
from tests.helpers.catalog_log import cache_filled, caught_up
from tests.helpers.launching import resolved_launch, stored_decision

AT = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
# A registration with one unknown field nested 5000 deep: msgspec raises RecursionError reading it.
DEEP = (
    b'{"type": "task_registered.v1", "project": "alpha", "domain": "development", "x": '
    + b"[" * 5000
    + b"]" * 5000
    + b"}"
)


@task
def keep(value: Any) -> Any:
    return value


@workflow
def keep_any(value: Any) -> Any:
    return keep(value=value)


class KeptAside:
    """A ``KeepAside`` that remembers each message kept aside, with its reason."""

    def __init__(self) -> None:
        self.kept: dict[int, str] = {}

    async def __call__(self, message: StoredMessage, reason: str) -> None:
        self.kept[message.sequence] = reason


@pytest.fixture
async def migrated(pg: asyncpg.Connection) -> asyncpg.Connection:
    await migrate(pg)
    return pg


@pytest.fixture
def kept() -> KeptAside:
    return KeptAside()


def registration(project: str, domain: str, name: str = keep.spec.name, version: str = keep.spec.version) -> str:
    return subjects.registration_subject(project, domain, "task", name, version)


def registered(project: str, domain: str) -> bytes:
    return codec.encode(TaskRegistered(project, domain, keep.spec))


async def registry(pg: asyncpg.Connection) -> list[tuple[str, str, str, str]]:
    found = await pg.fetch("SELECT project, domain, name, version FROM registry_entities ORDER BY project, version")
    return [(r["project"], r["domain"], r["name"], r["version"]) for r in found]


async def test_a_deeply_nested_message_is_kept_aside_and_the_next_one_projected(
    migrated: asyncpg.Connection, kept: KeptAside
) -> None:
    messages = [
        StoredMessage(1, registration("alpha", "development", "deep", "v1"), DEEP, AT),
        StoredMessage(2, registration("alpha", "development"), registered("alpha", "development"), AT),
    ]
    assert await apply_batch(migrated, messages, keep_aside=kept) == 2
    assert list(kept.kept) == [1]
    assert "nested too deeply" in kept.kept[1]
    assert await registry(migrated) == [("alpha", "development", keep.spec.name, keep.spec.version)]


async def test_a_deeply_nested_registration_does_not_stop_the_catalog(
    nats_url: str, database_url: str, nc: NATS, pg: asyncpg.Connection
) -> None:
    js = nc.jetstream()
    await js.publish(registration("alpha", "development", "deep", "v1"), DEEP, stream=subjects.EVENTS_STREAM)
    good = await js.publish(
        registration("alpha", "development"), registered("alpha", "development"), stream=subjects.EVENTS_STREAM
    )
    async with anyio.create_task_group() as tg:
        await tg.start(CatalogService(nats_url, database_url, replica="deep").run)
        await caught_up(nc, good.seq)
        tg.cancel_scope.cancel()
    assert await stored_offset(pg) == good.seq
    assert await registry(pg) == [("alpha", "development", keep.spec.name, keep.spec.version)]


@pytest.mark.parametrize(
    "subject",
    [
        registration("alpha", "development"),
        registration("beta", "development"),
        registration("beta", "production", "other"),
        registration("beta", "production", version="v0"),
        subjects.registration_subject("beta", "production", "workflow", keep.spec.name, keep.spec.version),
    ],
    ids=["project", "domain", "name", "version", "kind"],
)
async def test_a_registration_is_kept_aside_unless_its_subject_names_what_it_registers(
    migrated: asyncpg.Connection, kept: KeptAside, subject: str
) -> None:
    """A registration of beta/production's task, stored on another project's, domain's, name's, version's or
    kind's subject, is no part of any registry: its first registration there cannot be taken ahead of it either."""
    forged = StoredMessage(1, subject, registered("beta", "production"), AT)
    genuine = StoredMessage(2, registration("beta", "production"), registered("beta", "production"), AT)
    assert await apply_batch(migrated, [forged, genuine], keep_aside=kept) == 2
    assert list(kept.kept) == [1]
    assert (
        f"on {subject} holds a record of task '{keep.spec.name}' version {keep.spec.version} of beta/production"
        in (kept.kept[1])
    )
    [row] = await migrated.fetch("SELECT project, domain, sequence FROM registry_entities")
    assert dict(row) == {"project": "beta", "domain": "production", "sequence": 2}


def filled(project: str, cache_key: str = "k1") -> CacheFilled:
    return cache_filled(project, AT, cache_key)


@pytest.mark.parametrize("cache_key", ["k1", "k2"])
async def test_a_cache_record_is_kept_aside_unless_its_subject_names_its_project_domain_and_key(
    migrated: asyncpg.Connection, kept: KeptAside, cache_key: str
) -> None:
    """alpha's client can neither fill an entry of beta's nor clear one, nor one of another key than its subject's."""
    beta_k1 = subjects.cache_entry_subject("beta", "development", "k1")
    alpha_k1 = subjects.cache_entry_subject("alpha", "development", "k1")
    messages = [
        StoredMessage(1, beta_k1, codec.encode(filled("beta")), AT),
        StoredMessage(2, alpha_k1, codec.encode(filled("beta", cache_key)), AT),
        StoredMessage(
            3,
            alpha_k1,
            codec.encode(
                CacheCleared(project="beta", domain="development", cache_key=cache_key, cleared_by="x", at=AT)
            ),
            AT,
        ),
        StoredMessage(4, beta_k1, codec.encode(filled("alpha")), AT),
    ]
    assert await apply_batch(migrated, messages, keep_aside=kept) == 4
    assert list(kept.kept) == [2, 3, 4]
    assert f"on {alpha_k1} holds a record of cache key '{cache_key}' of beta/development" in kept.kept[2]
    rows = await migrated.fetch("SELECT project, cache_key, sequence FROM cache_entries")
    assert [dict(r) for r in rows] == [{"project": "beta", "cache_key": "k1", "sequence": 1}]


def launch(spec: Any, inputs: dict[str, Any], execution_id: str, project: str) -> StoredMessage:
    events = decide(
        None,
        resolved_launch(spec, inputs, execution_id, f"launch:{execution_id}", project=project, domain="development"),
    )
    subject = subjects.execution_subject(project, "development", execution_id)
    return StoredMessage(0, subject, stored_decision(execution_id, events), AT)


async def test_two_tenants_workflows_of_one_name_and_version_keep_their_own_node_interfaces(
    migrated: asyncpg.Connection, kept: KeptAside
) -> None:
    """A version is its content's hash only when the SDK computed it: one sent over the wire may be any string."""
    alpha_spec = workflows.add_two.spec
    beta_spec = msgspec.structs.replace(keep_any.spec, name=alpha_spec.name, version=alpha_spec.version)
    known = KnownWorkflows()
    alpha = launch(alpha_spec, {"a": 1, "b": 2}, "a1", "alpha")._replace(sequence=1)
    beta = launch(beta_spec, {"value": 5}, "b1", "beta")._replace(sequence=2)
    await apply_batch(migrated, [alpha], known, keep_aside=kept)
    await apply_batch(migrated, [beta], known, keep_aside=kept)
    assert kept.kept == {}
    assert await migrated.fetchval("SELECT count(*) FROM executions WHERE project = 'beta'") == 1
    uses = await migrated.fetch("SELECT node_id, name FROM lineage_uses WHERE project = 'beta' ORDER BY name")
    assert [(r["node_id"], r["name"]) for r in uses] == [(keep_any.spec.nodes[0].id, "value")]
