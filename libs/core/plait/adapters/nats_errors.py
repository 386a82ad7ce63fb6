"""NATS's errors as plait's: what reaches a caller of the client is a ``PlaitError``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import nats.errors
import nats.js.errors

from plait.errors import PlaitError, Timeout, Unavailable

WRONG_LAST_SEQUENCE = 10071  # an append's expected last (subject) sequence is not the stream's
DUPLICATE_IN_PROCESS = 10158  # a message with the same Nats-Msg-Id is still being stored (replicated streams)
MESSAGE_TOO_LARGE = 10054  # the stream's max_msg_size

UNAVAILABLE = (
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
)
"""Nothing took the request: retrying it later may work."""


@contextlib.contextmanager
def as_plait_errors(action: str, *, execution_id: str = "") -> Iterator[None]:
    """Raise NATS's errors inside as ``Unavailable``, ``Timeout`` or ``PlaitError``, naming ``action`` (and the
    execution, for a launch that may have been stored)."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise Unavailable(f"{action}: {_reason(exc)}", execution_id=execution_id) from exc
    except nats.errors.TimeoutError as exc:
        raise Timeout(f"{action}: no answer in time", execution_id=execution_id) from exc
    except nats.errors.Error as exc:
        raise PlaitError(f"{action}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
