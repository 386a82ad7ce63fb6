"""The registry: registered tasks, workflows and launch plans, one subject per (kind, name, version), written once."""

from __future__ import annotations

import contextlib

import anyio
import msgspec
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import PubAck, RawStreamMsg

from plait import codec
from plait.adapters.direct_reads import last_message
from plait.adapters.nats_errors import DUPLICATE_IN_PROCESS, WRONG_LAST_SEQUENCE
from plait.adapters.scoped_reads import subject_messages
from plait.bounded_cache import BytesBoundedCache
from plait.core.events import LaunchPlanRegistered, Registration, TaskRegistered, WorkflowRegistered
from plait.core.model import EntityKind, LaunchPlanSpec, TaskSpec, WorkflowSpec
from plait.errors import NotFound, RegistrationConflict
from plait.protocol import signing, subjects
from plait.protocol.headers import NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MSG_ID

log = structlog.get_logger()

DUPLICATE_IN_PROCESS_PATIENCE_SECONDS = 5.0

registration_decoder = msgspec.json.Decoder(Registration)


def kind_of(registration: Registration) -> EntityKind:
    """The registry kind of a registration: its subject token and catalog kind."""
    if isinstance(registration, TaskRegistered):
        return "task"
    return "workflow" if isinstance(registration, WorkflowRegistered) else "launch_plan"


REGISTRY_CACHE_BYTES = 32 * 1024 * 1024
"""The registry's cache of workflow specs, measured by the bytes of their registrations."""


class Registry:
    """Registered tasks and workflows: one subject per (kind, name, version), written once.

    Workflow specs are cached, least recently used first out, up to ``cache_bytes`` of their registrations: a
    version never changes, so a cached spec is never stale.
    """

    def __init__(self, js: JetStreamContext, cache_bytes: int = REGISTRY_CACHE_BYTES) -> None:
        self.js = js
        self._workflows: BytesBoundedCache[tuple[str, str, str, str], WorkflowSpec] = BytesBoundedCache(cache_bytes)

    async def register(self, registration: Registration) -> bool:
        """Store a registration; True when new, False when identical content was there already.

        Raises ``RegistrationConflict`` when the same name and version holds different content.
        """
        kind, spec = kind_of(registration), registration.spec
        subject = subject_of(registration)
        data = codec.encode(registration)
        try:
            ack = await self._publish_once(subject, data)
        except nats.js.errors.APIError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            existing = await self._first(subject)
            if existing is None or existing.data != data:
                raise RegistrationConflict(
                    f"{kind} '{spec.name}' version {spec.version} is already registered with different content"
                ) from exc
            return False
        return not ack.duplicate

    async def _publish_once(self, subject: str, data: bytes) -> PubAck:
        """Publish a registration on its empty subject. On a replicated stream, a concurrent publish of the same
        registration is refused while the first is being stored (``DUPLICATE_IN_PROCESS``): asked again shortly, it
        is then a duplicate, or meets the stored first one."""
        headers = {NATS_EXPECTED_LAST_SUBJECT_SEQUENCE: "0", NATS_MSG_ID: codec.digest(data)}
        headers |= signing.sign_headers(subject, data)
        delay = 0.01
        while True:
            try:
                return await self.js.publish(subject, data, headers=headers, stream=subjects.EVENTS_STREAM)
            except nats.js.errors.APIError as exc:
                if exc.err_code != DUPLICATE_IN_PROCESS or delay > DUPLICATE_IN_PROCESS_PATIENCE_SECONDS:
                    raise
            await anyio.sleep(delay)
            delay *= 2

    async def workflow(self, project: str, domain: str, name: str, version: str) -> WorkflowSpec:
        key = (project, domain, name, version)
        cached = self._workflows.get(key)
        if cached is not None:
            return cached
        what = f"workflow '{name}' version {version} in {project}/{domain}"
        registration, size = await self._get((project, domain, "workflow", name, version), what)
        if not isinstance(registration, WorkflowRegistered):
            raise NotFound(f"{what} is not registered: its subject holds a {kind_of(registration)}")
        self._workflows.put(key, registration.spec, size)
        return registration.spec

    @property
    def cached_bytes(self) -> int:
        return self._workflows.size_bytes

    async def task(self, project: str, domain: str, name: str, version: str) -> TaskSpec:
        what = f"task '{name}' version {version} in {project}/{domain}"
        registration, _ = await self._get((project, domain, "task", name, version), what)
        if not isinstance(registration, TaskRegistered):
            raise NotFound(f"{what} is not registered: its subject holds a {kind_of(registration)}")
        return registration.spec

    async def launch_plan(self, project: str, domain: str, name: str, version: str) -> LaunchPlanSpec:
        what = f"launch plan '{name}' version {version} in {project}/{domain}"
        registration, _ = await self._get((project, domain, "launch_plan", name, version), what)
        if not isinstance(registration, LaunchPlanRegistered):
            raise NotFound(f"{what} is not registered: its subject holds a {kind_of(registration)}")
        return registration.spec

    async def _get(self, key: tuple[str, str, EntityKind, str, str], what: str) -> tuple[Registration, int]:
        """The registration of ``key`` (project, domain, kind, name, version) and its size in bytes."""
        try:
            subject = subjects.registration_subject(*key)
        except ValueError as exc:  # a name no registration can have
            raise NotFound(f"{what} is not registered: {exc}") from None
        raw = await self._first(subject)
        if raw is None or raw.data is None:
            raise NotFound(f"{what} is not registered")
        try:
            registration: Registration = registration_decoder.decode(raw.data)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise NotFound(
                f"{what} is not registered: its subject holds a record that does not decode ({exc})"
            ) from exc
        if _subject_or_none(registration) != subject:
            held = kind_of(registration)
            other = f"a {held}" if held != key[2] else "the registration of another entity"
            raise NotFound(f"{what} is not registered: its subject holds {other}")
        return registration, len(raw.data)

    async def _first(self, subject: str) -> RawStreamMsg | None:
        """The registration stored first on ``subject``: the one a registry's write-once publish stored (it expects
        the subject empty, a header the stream keeps), and not a record anyone allowed to publish there appended
        after it. Its last message, when that is the one (one direct get); else the subject's first message."""
        raw = await last_message(self.js, subject)
        if raw is None or (raw.headers or {}).get(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE) == "0":
            return raw
        log.warning("registration_appended_to", subject=subject, sequence=raw.seq)
        async with contextlib.aclosing(subject_messages(self.js, subjects.EVENTS_STREAM, subject)) as messages:
            async for first in messages:
                return first
        return None


def subject_of(registration: Registration) -> str:
    """The subject a registration is stored on, named by its project, domain, kind, name and version (``ValueError``
    for a name no subject can hold)."""
    spec = registration.spec
    return subjects.registration_subject(
        registration.project, registration.domain, kind_of(registration), spec.name, spec.version
    )


def _subject_or_none(registration: Registration) -> str | None:
    try:
        return subject_of(registration)
    except ValueError:
        return None
