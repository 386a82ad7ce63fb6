"""Connecting to NATS, and what a JetStream context sends its requests with."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import math
import ssl
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import nats
import nats.errors
import structlog
from anyio.abc import ObjectReceiveStream
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from plait.adapters.nats_auth import INBOX_ROOT, NatsAuth, current_auth, redacted_urls
from plait.errors import ConnectError
from plait.settings import VARIABLES

FIRST_CONNECT_ATTEMPTS = 3
FIRST_CONNECT_SECONDS = 30.0
"""A backstop over the first connection's attempts: nats-py can wait forever after a failed TLS handshake."""
REFUSALS_KEPT = 20  # the server's last refusals kept per connection


def server_urls(url: str) -> list[str]:
    """One or several NATS URLs, comma-separated (any server of a cluster will do)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def _log_nats_error(error: Exception) -> None:
    structlog.get_logger().warning("nats_error", error=str(error) or type(error).__name__)


async def connect(url: str, name: str, *, auth: NatsAuth | None = None, inbox_prefix: str = INBOX_ROOT) -> NATS:
    """A NATS connection that keeps reconnecting once established, authenticated with ``auth`` (by default the
    process's ``nats_*`` settings) and receiving replies under ``inbox_prefix``.

    The first connection is tried a few times over every given server; if none answers it raises
    ``ConnectError`` rather than waiting forever.
    """
    options = (auth if auth is not None else current_auth()).options()
    with_credentials = "@" in url or any(key in options for key in ("user", "token", "nkeys_seed", "user_credentials"))
    # what the servers refused (authorization, permissions): nats-py's own errors say less
    refusals: collections.deque[str] = collections.deque(maxlen=REFUSALS_KEPT)
    untrusted: asyncio.Future[ssl.SSLCertVerificationError] = asyncio.get_running_loop().create_future()
    # ^ set by a TLS verification failure: trying again will not help

    async def on_error(error: Exception) -> None:
        if "violation" in str(error).lower():
            refusals.append(str(error))
        if isinstance(error, ssl.SSLCertVerificationError) and not untrusted.done():
            untrusted.set_result(error)
        await _log_nats_error(error)

    reconnected = _Reconnected()
    where = redacted_urls(url)
    connecting = asyncio.ensure_future(
        nats.connect(
            server_urls(url),
            inbox_prefix=inbox_prefix,
            **options,
            name=name,
            connect_timeout=5,
            max_reconnect_attempts=FIRST_CONNECT_ATTEMPTS,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            error_cb=on_error,
            reconnected_cb=reconnected.tell,
        )
    )
    try:
        either: set[asyncio.Future[Any]] = {connecting, untrusted}
        await asyncio.wait(either, timeout=FIRST_CONNECT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not connecting.done():
            connecting.cancel()
            await asyncio.wait({connecting})
    succeeded = connecting.done() and not connecting.cancelled() and connecting.exception() is None
    if untrusted.done() and not succeeded:
        raise ConnectError(
            f"cannot connect to NATS at {where}: the server's TLS certificate is not trusted "
            f"({untrusted.result().verify_message}); "
            f"check {VARIABLES['nats_tls_ca']} and {VARIABLES['nats_tls_hostname']}"
        )
    if connecting.cancelled():
        raise ConnectError(f"cannot connect to NATS at {where}: no connection within {FIRST_CONNECT_SECONDS:.0f} s")
    try:
        nc = connecting.result()
        if with_credentials:
            _AUTHENTICATED.add(nc)
        _REFUSALS[nc] = refusals
        _RECONNECTED[nc] = reconnected
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        reason = refusals[-1] if refusals else str(exc) or type(exc).__name__
        raise ConnectError(f"cannot connect to NATS at {where}: {reason}") from exc
    nc.options["max_reconnect_attempts"] = -1  # from now on, ride out server restarts and failovers
    return nc


@dataclasses.dataclass(frozen=True)
class JetStreamRoute:
    """Where a JetStream context sends its API requests: the connection, the API prefix (``$JS.API``, or a
    domain's), and how long it waits for an answer."""

    nc: NATS
    api_prefix: str
    timeout: float


_AUTHENTICATED: weakref.WeakSet[NATS] = weakref.WeakSet()


def authenticated(js: JetStreamContext) -> bool:
    """Whether ``js``'s connection was made with credentials: it may then be confined to a project by the broker's
    permissions, and reads through APIs that name their subject (``plait.adapters.scoped_reads``)."""
    return js._nc in _AUTHENTICATED


_REFUSALS: weakref.WeakKeyDictionary[NATS, collections.deque[str]] = weakref.WeakKeyDictionary()


class _Reconnected:
    """Who to tell when a connection is established again (its subscriptions already made anew)."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[], None]] = []

    async def tell(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # raised into nats-py's reconnecting task, it would end every later reconnection
                structlog.get_logger().exception("reconnection_listener_failed")


_RECONNECTED: weakref.WeakKeyDictionary[NATS, _Reconnected] = weakref.WeakKeyDictionary()


def reconnection_count(nc: NATS) -> int:
    """How many times ``nc`` was established again: what a connection held on the server before a different count
    (a consumer, a pull request) may be gone with a server that restarted."""
    return int(nc.stats["reconnects"])


def on_reconnection(nc: NATS, listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` each time ``nc`` (made by ``connect``; else never) is established again, after nats-py has
    made its subscriptions anew: what the server kept for the connection before (a pull request waiting for
    messages) may be gone with a server that restarted. Returns what stops the calls."""
    reconnected = _RECONNECTED.get(nc)
    if reconnected is None:
        return lambda: None
    reconnected.listeners.append(listener)
    return lambda: reconnected.listeners.remove(listener)


@contextlib.contextmanager
def reconnections(nc: NATS) -> Iterator[ObjectReceiveStream[None]]:
    """A stream that gets an item each time ``nc`` is established again (see ``on_reconnection``) while in the
    block."""
    reconnected, each = anyio.create_memory_object_stream[None](math.inf)
    stop_listening = on_reconnection(nc, lambda: reconnected.send_nowait(None))
    try:
        yield each
    finally:
        stop_listening()
        reconnected.close()
        each.close()


def refusal(js: JetStreamContext, subject_prefix: str) -> str | None:
    """The last refusal the server sent ``js``'s connection (made by ``connect``) for a subject that starts with
    ``subject_prefix``: a request it refused gets no answer, only this."""
    wanted = f'"{subject_prefix.lower()}'
    return next((said for said in reversed(_REFUSALS.get(js._nc, ())) if wanted in said.lower()), None)


def route_of(js: JetStreamContext) -> JetStreamRoute:
    """The connection, API prefix and timeout ``js`` was made with.

    nats-py offers no public accessor for them, and no batched direct get (ADR-31) to send with them: this
    module is the one place that reads nats-py's private attributes.
    """
    return JetStreamRoute(nc=js._nc, api_prefix=js._prefix, timeout=js._timeout)


def consumer_of(subscription: JetStreamContext.PushSubscription) -> str:
    """The name of the consumer behind ``subscription``, kept current by nats-py when it recreates an ordered
    consumer. The public way (``consumer_info()``) asks the server, a round trip per finished follower."""
    return str(subscription._consumer)
