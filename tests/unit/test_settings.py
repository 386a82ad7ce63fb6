"""Settings from PLAIT_* variables: parsed by type, and a bad value is refused naming its variable."""

from __future__ import annotations

import pytest

from plait.errors import InputError
from plait.settings import load_settings


def test_values_are_parsed_from_the_environment() -> None:
    settings = load_settings(
        {"PLAIT_CACHE_RESERVATION_SECONDS": "30", "PLAIT_CACHE_LOOKUP_SECONDS": "0.1", "PLAIT_CONCURRENCY": "3"}
    )
    assert (settings.cache_reservation_seconds, settings.cache_lookup_seconds, settings.concurrency) == (30.0, 0.1, 3)
    assert load_settings({}).cache_reservation_seconds == 600.0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PLAIT_CACHE_RESERVATION_SECONDS": "0"}, "PLAIT_CACHE_RESERVATION_SECONDS must be positive, got 0.0"),
        ({"PLAIT_CACHE_LOOKUP_SECONDS": "-1"}, "PLAIT_CACHE_LOOKUP_SECONDS must be positive, got -1.0"),
        ({"PLAIT_CACHE_LOOKUP_SECONDS": "soon"}, "PLAIT_CACHE_LOOKUP_SECONDS"),
        ({"PLAIT_NATS_URL": "localhost:4222"}, "PLAIT_NATS_URL must look like nats://HOST:PORT"),
        ({"PLAIT_STREAM_REPLICAS": "2"}, "PLAIT_STREAM_REPLICAS must be 1, 3 or 5, got 2"),
        ({"PLAIT_WORKER_MAX_MEMORY_MB": "-1"}, "PLAIT_WORKER_MAX_MEMORY_MB must be 0"),
        ({"PLAIT_WORKER_MAX_ATTEMPTS": "many"}, "PLAIT_WORKER_MAX_ATTEMPTS"),
    ],
)
def test_a_bad_value_names_its_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        load_settings(environ)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://plait@/plait?host=/run/postgresql",
        "postgresql:///plait",
        "postgres://plait:secret@db-1:5432,db-2:5433/plait?sslmode=require&target_session_attrs=read-write",
        "postgresql://%2Frun%2Fpostgresql/plait",
    ],
)
def test_every_postgresql_url_libpq_accepts_is_taken_as_it_is(url: str) -> None:
    assert load_settings({"PLAIT_DATABASE_URL": url}).database_url == url
