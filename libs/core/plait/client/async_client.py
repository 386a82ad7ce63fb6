"""``AsyncClient``: the client's jobs, each in its own module, put together."""

from __future__ import annotations

from plait.client.cache_admin import CacheAdmin
from plait.client.launching import Launching
from plait.client.live_logs import LiveLogs
from plait.client.queries import Queries
from plait.client.schedules import Scheduling
from plait.client.signalling import Signalling


class AsyncClient(Launching, Queries, CacheAdmin, Scheduling, LiveLogs, Signalling):
    """Talks to plait through NATS only: registers workflows, launches and follows executions (the event log
    and the command stream), and asks the catalog.

    ``await AsyncClient.connect(url, project, domain)`` opens one; use it as an async context manager, or
    ``close()`` it."""
