"""Taking the catalog's quarantined messages again (``plait quarantine replay``).

A quarantined message's whole subject (its execution's decisions, its cache key's records) is applied again in
order, up to the projection's offset: its rows then are what projecting it in order gives. An entry whose
subject now applies is resolved; one that still fails stays, with the reason in the reply.
"""

from __future__ import annotations

from collections import defaultdict

import asyncpg
from nats.js import JetStreamContext

from plait.adapters.quarantine import Retry
from plait.adapters.stream_reads import read_messages
from plait.protocol import subjects
from plait.protocol.quarantine import QuarantineEntry
from plait_catalog.projection import MESSAGE_ERRORS, ProjectionError, StoredMessage, apply_again
from plait_catalog.projector import stored_message


def retrying(js: JetStreamContext, pool: asyncpg.Pool) -> Retry:
    """The catalog's ``Retry``: apply each entry's subject again."""

    async def retry(entries: list[QuarantineEntry]) -> dict[int, str]:
        by_subject: dict[str, list[QuarantineEntry]] = defaultdict(list)
        for entry in entries:
            by_subject[entry.subject].append(entry)
        unreadable: dict[int, str] = {}
        for subject, kept in by_subject.items():

            async def read(subject: str = subject) -> list[StoredMessage]:
                return [stored_message(m) for m in await read_messages(js, subjects.EVENTS_STREAM, subject)]

            try:
                async with pool.acquire() as connection:
                    await apply_again(connection, read, {entry.sequence for entry in kept})
            except (ProjectionError, *MESSAGE_ERRORS) as exc:
                unreadable.update((entry.sequence, f"{type(exc).__name__}: {exc}") for entry in kept)
        return unreadable

    return retry
