"""A service's streams at its start: made by the service itself where NATS lets anyone manage streams (the embedded
stack, a deployment without credentials), else awaited until the operator has made them (``plait streams ensure``).

A service with a credential (which NATS may confine: deploy/nats/tenants.conf) creates and updates no stream. While a
stream or bucket is missing, or not as this release needs it, it is not ready: its readiness names what is missing and
the command that makes it, logged once per change. JetStream announces every stream created or updated (advisories):
each one has the service look again, as does the passing of ``RECHECK_SECONDS`` (an advisory sent while the service
was reconnecting is not sent again).
"""

from __future__ import annotations

import contextlib

import anyio
import nats.errors
import structlog
from nats.js import JetStreamContext

from plait.adapters.connection import authenticated, route_of
from plait.adapters.streams import ENSURE_COMMAND, ensure_streams, stream_problems, streams_missing_message
from plait.metrics.health import Health

STREAMS_CHECK = "streams"  # the readiness check that names what is missing
STREAM_ADVISORIES = "$JS.EVENT.ADVISORY.STREAM.>"  # CREATED.<stream>, UPDATED.<stream>, DELETED.<stream>
RECHECK_SECONDS = 5.0


async def streams_ready(js: JetStreamContext, replicas: int | None, health: Health) -> None:
    """Return once the streams are as this release needs them: ensured here when ``js``'s connection has no
    credentials, else awaited (see the module's docstring)."""
    if not authenticated(js):
        await ensure_streams(js, replicas)
        return
    await until_streams_made(js, health)


async def until_streams_made(js: JetStreamContext, health: Health) -> None:
    """Wait until no stream or bucket is missing or different from this release's; meanwhile ``health`` is not ready
    and says why."""
    log = structlog.get_logger()
    advisories = await route_of(js).nc.subscribe(STREAM_ADVISORIES)  # before looking: none is missed in between
    reported: list[str] = []
    try:
        while problems := await stream_problems(js):
            if problems != reported:
                message = streams_missing_message(problems)
                log.error("streams_not_ready", problems=problems, fix=f"{ENSURE_COMMAND} (as the operator)")
                health.set_problem(STREAMS_CHECK, message)
                reported = problems
            with contextlib.suppress(nats.errors.TimeoutError):  # look again anyway
                await advisories.next_msg(timeout=RECHECK_SECONDS)
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(nats.errors.Error):  # a closed connection has none
            await advisories.unsubscribe()
    if reported:
        health.set_problem(STREAMS_CHECK, None)
        log.info("streams_ready")
