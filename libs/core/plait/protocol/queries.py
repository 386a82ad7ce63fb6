"""What every catalog query shares: its reply is either the answer or ``{"error": {...}}``.

Datetimes travel as RFC 3339 strings.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

StreamSequence = Annotated[int, msgspec.Meta(ge=0)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]

ErrorType = Literal["bad_request", "not_found", "timeout", "internal"]


class ErrorInfo(msgspec.Struct, kw_only=True):
    type: ErrorType
    message: str


class ErrorReply(msgspec.Struct, kw_only=True):
    error: ErrorInfo


Reply = msgspec.Struct
"""Any answer: the query's reply Struct, or an ``ErrorReply``."""


def error_reply(kind: ErrorType, message: str) -> ErrorReply:
    return ErrorReply(error=ErrorInfo(type=kind, message=message))
