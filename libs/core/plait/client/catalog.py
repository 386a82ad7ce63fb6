"""Asking the catalog: a typed request out, the reply's Struct back, an error reply as the matching ``PlaitError``."""

from __future__ import annotations

import functools
from typing import TypeVar

import msgspec
import nats.errors

from plait.adapters.nats_errors import as_plait_errors
from plait.client.connection import ClientBase
from plait.errors import InputError, NotFound, PlaitError, Timeout, Unavailable
from plait.protocol import subjects
from plait.protocol.queries import ErrorInfo, ErrorType

ReplyT = TypeVar("ReplyT", bound=msgspec.Struct)

QUERY_TIMEOUT_SECONDS = 10.0

_ERRORS: dict[ErrorType, type[PlaitError]] = {
    "not_found": NotFound,
    "timeout": Timeout,
    "bad_request": InputError,
    "internal": PlaitError,
}


class _MaybeError(msgspec.Struct):
    error: ErrorInfo | None = None


_error_decoder = msgspec.json.Decoder(_MaybeError)


@functools.cache
def _decoder(reply_type: type[ReplyT]) -> msgspec.json.Decoder[ReplyT]:
    return msgspec.json.Decoder(reply_type)


class CatalogClient(ClientBase):
    async def _ask(
        self, kind: str, request: msgspec.Struct, reply_type: type[ReplyT], timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> ReplyT:
        """The catalog's answer to ``request``, the query ``kind`` (a ``subjects.CATALOG_*`` name) of this client's
        project and domain, decoded as ``reply_type``."""
        subject = subjects.catalog_subject(self.project, self.domain, kind)
        try:
            reply = await self.nc.request(subject, msgspec.json.encode(request), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise Unavailable("no catalog replica is running (start one with `plait catalog`)") from None
        except nats.errors.TimeoutError:
            raise Timeout(f"the catalog did not answer within {timeout:.0f} s") from None
        except nats.errors.Error as exc:  # the connection is closed, or reconnecting
            raise Unavailable(f"cannot ask the catalog: {exc or type(exc).__name__}") from exc
        try:
            error = _error_decoder.decode(reply.data).error
            if error is not None:
                raise _ERRORS[error.type](error.message)
            answer: ReplyT = _decoder(reply_type).decode(reply.data)
            return answer
        except msgspec.DecodeError as exc:
            raise PlaitError(f"the catalog's reply to {subject} is not a {reply_type.__name__}: {exc}") from None

    async def log_position(self) -> int:
        """The event stream's last sequence: as ``min_sequence``, it makes a catalog query see everything up to now."""
        with as_plait_errors("reading the event stream's position"):
            info = await self.js.stream_info(subjects.EVENTS_STREAM)
        return info.state.last_seq
