"""What every part of the client shares: the NATS connection, the project and domain it talks about, and the
subjects of their executions."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from plait.adapters.connection import authenticated, connect, route_of
from plait.adapters.direct_reads import last_message
from plait.adapters.event_store import EventStore
from plait.adapters.nats_auth import NatsAuth, tenant_inbox
from plait.adapters.nats_errors import as_plait_errors
from plait.adapters.object_store import ValueStore
from plait.adapters.quarantine import UNREADABLE
from plait.adapters.registry import Registry
from plait.adapters.streams import ensure_streams_exist
from plait.errors import InputError, PlaitError
from plait.protocol import subjects


@contextlib.contextmanager
def readable(what: str) -> Iterator[None]:
    """A stored record that does not decode (malformed, or of a version newer than this client knows) raised as a
    ``PlaitError`` naming ``what`` was being read."""
    try:
        yield
    except (*UNREADABLE, RecursionError) as exc:
        raise PlaitError(f"{what}: a stored record cannot be read by this client ({exc})") from exc


class ClientBase:
    """A connection to plait's NATS, scoped to one project and domain."""

    def __init__(self, nc: NATS, project: str = "default", domain: str = "development") -> None:
        try:
            project, domain = (
                subjects.check_tenant_name(project, "project"),
                subjects.check_tenant_name(domain, "domain"),
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.nc, self.js = nc, nc.jetstream()
        self.project, self.domain = project, domain
        # a connection with credentials may be confined: it reads through APIs that name the subject (scoped_reads)
        self._store = EventStore(self.js, scoped=authenticated(self.js))
        self._registry = Registry(self.js)
        self._values = ValueStore.on_jetstream(self.js)

    @classmethod
    async def connect(
        cls, url: str, project: str = "default", domain: str = "development", *, auth: NatsAuth | None = None
    ) -> Self:
        """Connect to the NATS server(s) at ``url`` (comma-separated, credentials as ``nats://user:pass@host``) and
        talk about ``project``/``domain``, as ``auth`` (by default the ``nats_*`` settings); raises ``ConnectError``
        when no server answers. Replies come to the
        inboxes of that project and domain (``tenant_inbox``), which a confined credential may subscribe to."""
        try:
            inbox = tenant_inbox(
                subjects.check_tenant_name(project, "project"), subjects.check_tenant_name(domain, "domain")
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None
        nc = await connect(url, "plait-client", auth=auth, inbox_prefix=inbox)
        try:
            client = cls(nc, project, domain)
            with as_plait_errors(f"connecting to {url}"):
                await ensure_streams_exist(client.js)
        except BaseException:
            await nc.close()
            raise
        return client

    async def close(self) -> None:
        """Close the connection; what was published is flushed first."""
        with contextlib.suppress(nats.errors.Error, OSError):  # the server is gone: there is nothing left to close
            await self.nc.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _subject(self, execution_id: str) -> str:
        try:
            return subjects.execution_subject(self.project, self.domain, execution_id)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    async def _load_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with their references replaced by what they name; files and directories are downloaded to a
        new temporary directory (left empty and removed when there are none)."""
        workdir = tempfile.mkdtemp(prefix="plait-values-")
        try:
            with as_plait_errors("reading stored values"):
                return await self._values.load_all(values, Path(workdir))
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(workdir)  # only when nothing was downloaded into it

    async def _exists(self, execution_id: str) -> bool:
        return await last_message(self.js, self._subject(execution_id)) is not None

    async def _subjects(self, pattern: str) -> list[str]:
        """The subjects of the events stream that match ``pattern``, over every page of the server's answer."""
        found: list[str] = []
        while True:
            request = {"subjects_filter": pattern, "offset": len(found)}
            reply = await self.nc.request(
                f"{route_of(self.js).api_prefix}.STREAM.INFO.{subjects.EVENTS_STREAM}",
                msgspec.json.encode(request),
                timeout=10,
            )
            info: dict[str, Any] = msgspec.json.decode(reply.data)
            if "error" in info:
                raise PlaitError(f"cannot list subjects {pattern}: {info['error'].get('description', info['error'])}")
            page = list((info.get("state") or {}).get("subjects") or {})
            found += page
            if not page or len(found) >= info.get("total", 0):
                return found


def any_last_token(subject: str) -> str:
    return subject.rsplit(".", 1)[0] + ".*"
