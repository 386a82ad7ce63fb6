"""The cache log on JetStream: a key's entry records (read its last, append with optimistic concurrency)
and its waiters. Reads go to the stream leader, not a direct-get replica, so a reader never sees an older
state than the one its next append is checked against."""

from __future__ import annotations

import msgspec
import nats.js.errors
from nats.js import JetStreamContext

from plait import codec
from plait.adapters.nats_errors import WRONG_LAST_SEQUENCE
from plait.core.cachelog import CacheEntryRecord, CacheWaiter
from plait.errors import ConflictError
from plait.protocol import signing, subjects
from plait.protocol.headers import NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MSG_ID

entry_decoder = msgspec.json.Decoder(CacheEntryRecord)
waiter_decoder = msgspec.json.Decoder(CacheWaiter)


class CacheLog:
    def __init__(self, js: JetStreamContext, project: str, domain: str, key: str) -> None:
        self.js, self.key, self.project, self.domain = js, key, project, domain
        self.entry_subject = subjects.cache_entry_subject(project, domain, key)
        self.waiter_subject = subjects.cache_waiter_subject(project, domain, key)

    async def last(self) -> tuple[int, CacheEntryRecord | None]:
        """The key's newest entry record and its stream sequence; (0, None) for a key never used."""
        try:
            raw = await self.js.get_msg(subjects.EVENTS_STREAM, subject=self.entry_subject)
        except nats.js.errors.NotFoundError:
            return 0, None
        assert raw.seq is not None and raw.data is not None  # noqa: S101  an invariant of this code, not a check of input
        record: CacheEntryRecord = entry_decoder.decode(raw.data)
        return raw.seq, record

    async def append(self, record: CacheEntryRecord, *, expected: int | None = None, msg_id: str = "") -> int:
        """Store ``record``; with ``expected``, only while the key's last record is still at that sequence
        (else ``ConflictError``). ``msg_id`` (unique in the key's project and domain) makes a repeated append a
        no-op."""
        headers: dict[str, str] = {}
        if expected is not None:
            headers[NATS_EXPECTED_LAST_SUBJECT_SEQUENCE] = str(expected)
        if msg_id:
            headers[NATS_MSG_ID] = subjects.scoped_id(self.project, self.domain, msg_id)
        data = codec.encode(record)
        headers |= signing.sign_headers(self.entry_subject, data)
        try:
            ack = await self.js.publish(
                self.entry_subject, data, headers=headers or None, stream=subjects.EVENTS_STREAM
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise ConflictError(f"{self.entry_subject} moved past sequence {expected}") from exc
            raise
        return ack.seq

    async def add_waiter(self, waiter: CacheWaiter) -> int:
        ack = await self.js.publish(
            self.waiter_subject,
            codec.encode(waiter),
            headers={
                NATS_MSG_ID: subjects.scoped_id(
                    self.project, self.domain, f"wait/{waiter.execution_id}/{waiter.node}/{waiter.round}"
                )
            },
            stream=subjects.EVENTS_STREAM,
        )
        return ack.seq

    async def waiters(self, after: int) -> list[CacheWaiter]:
        """The waiters added after stream sequence ``after``, in order."""
        found: list[CacheWaiter] = []
        sequence = after + 1
        while True:
            try:
                raw = await self.js.get_msg(
                    subjects.EVENTS_STREAM, seq=sequence, subject=self.waiter_subject, next=True
                )
            except nats.js.errors.NotFoundError:
                return found
            assert raw.seq is not None and raw.data is not None  # noqa: S101  an invariant of this code, not a check of input
            found.append(waiter_decoder.decode(raw.data))
            sequence = raw.seq + 1
