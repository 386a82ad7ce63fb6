"""Live service replicas: each scheduler, executor and catalog announces itself (its version, and the URL of its
metrics endpoint if it serves one) in a key-value bucket, again every ``ANNOUNCE_EVERY_SECONDS``. Entries expire
``ANNOUNCEMENT_TTL_SECONDS`` after their last write, so a replica that dies disappears; one that stops deletes its
entry. ``plait top`` lists the replicas from it and scrapes their endpoints."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

SERVICES_BUCKET = "PLAIT_SERVICES"
ANNOUNCE_EVERY_SECONDS = 10.0
ANNOUNCEMENT_TTL_SECONDS = 30.0


class ServiceAnnouncement(msgspec.Struct, frozen=True, kw_only=True):
    """A live service replica: which service, its replica name and version, where its metrics endpoint is ("":
    none), when it started and when it last said so."""

    service: str
    replica: str
    version: str
    metrics_url: str = ""
    started: datetime
    last_seen: datetime


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-=]")


def service_key(service: str, replica: str) -> str:
    """The bucket key of one replica: ``<service>.<replica>`` (each as a key token)."""
    return f"{_KEY_UNSAFE.sub('_', service) or '_'}.{_KEY_UNSAFE.sub('_', replica) or '_'}"
