"""Each service is made from the settings with the same names for the same things, and no server."""

from __future__ import annotations

import functools
from collections.abc import Callable

import msgspec
import pytest

from plait.errors import InputError
from plait.settings import Settings
from plait_catalog import CatalogService
from plait_executor import ExecutorService
from plait_executor.backend import backend_from_settings
from plait_scheduler import SchedulerService

SETTINGS = Settings(
    nats_url="nats://127.0.0.1:4222",
    database_url="postgresql://127.0.0.1:5432/plait",
    replica="r7",
    cluster="east",
    queue="gpu",
    concurrency=3,
    stream_replicas=3,
    ack_wait_seconds=7.0,
    dispatch_ack_wait_seconds=9.0,
    attempt_deadline_seconds=60.0,
    state_cache_bytes=1024,
    cache_reservation_seconds=30.0,
    cache_lookup_seconds=0.25,
)


def test_the_scheduler_takes_its_settings() -> None:
    scheduler = SchedulerService.from_settings(SETTINGS)
    assert (scheduler.nats_url, scheduler.replica, scheduler.cluster) == ("nats://127.0.0.1:4222", "r7", "east")
    assert (scheduler.stream_replicas, scheduler.ack_wait_seconds, scheduler.attempt_deadline_seconds) == (3, 7.0, 60.0)
    assert (scheduler.cache_reservation_seconds, scheduler.cache_lookup_seconds) == (30.0, 0.25)
    assert scheduler.states.capacity_bytes == 1024


def test_the_executor_takes_its_settings() -> None:
    executor = ExecutorService.from_settings(SETTINGS)
    assert (executor.nats_url, executor.replica, executor.cluster, executor.queue) == (
        "nats://127.0.0.1:4222",
        "r7",
        "east",
        "gpu",
    )
    assert (executor.concurrency, executor.stream_replicas) == (3, 3)
    assert (executor.ack_wait_seconds, executor.attempt_deadline_seconds) == (9.0, 60.0)


def test_the_catalog_takes_its_settings() -> None:
    catalog = CatalogService.from_settings(SETTINGS)
    assert (catalog.nats_url, catalog.database_url, catalog.replica, catalog.stream_replicas) == (
        "nats://127.0.0.1:4222",
        "postgresql://127.0.0.1:5432/plait",
        "r7",
        3,
    )


NO_NATS = Settings(database_url=SETTINGS.database_url)
NO_DATABASE = Settings(nats_url=SETTINGS.nats_url)


@pytest.mark.parametrize(
    ("make", "settings", "variable"),
    [
        (SchedulerService.from_settings, NO_NATS, "PLAIT_NATS_URL"),
        (ExecutorService.from_settings, NO_NATS, "PLAIT_NATS_URL"),
        (CatalogService.from_settings, NO_NATS, "PLAIT_NATS_URL"),
        (CatalogService.from_settings, NO_DATABASE, "PLAIT_DATABASE_URL"),
    ],
)
def test_a_service_without_its_server_says_which_variable_is_missing(
    make: Callable[[Settings], object], settings: Settings, variable: str
) -> None:
    with pytest.raises(InputError, match=f"{variable} is not set"):
        make(settings)


def test_the_inline_value_limit_reaches_the_executor_and_the_pods_it_starts() -> None:
    settings = msgspec.structs.replace(SETTINGS, inline_value_limit=1000, executor_backend="kubernetes")
    assert ExecutorService.from_settings(settings).inline_value_limit == 1000
    factory = backend_from_settings(settings, 1)
    assert isinstance(factory, functools.partial)
    assert factory.args[0].env == {"PLAIT_INLINE_VALUE_LIMIT": "1000"}
    assert backend_from_settings(msgspec.structs.replace(settings, inline_value_limit=65536), 1).args[0].env == {}


def test_the_pods_connect_to_their_own_nats_url_when_one_is_set() -> None:
    settings = msgspec.structs.replace(SETTINGS, executor_backend="kubernetes", kubernetes_map_batch_seconds=2.5)
    target = backend_from_settings(settings, 1).args[0]  # type: ignore[attr-defined]
    assert (target.nats_url, target.map_batch_seconds) == ("nats://127.0.0.1:4222", 2.5)
    in_cluster = msgspec.structs.replace(settings, kubernetes_nats_url="nats://nats.plait.svc:4222")
    assert backend_from_settings(in_cluster, 1).args[0].nats_url == "nats://nats.plait.svc:4222"  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="PLAIT_KUBERNETES_NATS_URL must look like nats://HOST:PORT"):
        Settings(kubernetes_nats_url="http://nats:4222")
