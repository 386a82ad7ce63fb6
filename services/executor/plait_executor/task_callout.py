"""The NATS auth callout for task pods: nats-server asks it (on ``$SYS.REQ.USER.AUTH``) about every connection whose
user is not one of the configuration's ``auth_users``; it answers with a user allowed only what the connection's
task grant names (``task_permissions``), until the grant expires, or with the reason it is refused.

Requests and answers are sealed with curve keys (``plait.protocol.nats_xkey``: the grant never crosses the wire
in the clear). Every executor that holds the callout's account key (``PLAIT_NATS_CALLOUT_SEED_FILE``) answers, in
one queue group:
any replica serves, none is a single point of failure. It keeps no state: a reconnection is checked again. It never
logs a grant, a password or a token; a refusal is logged with its reason and where the connection came from.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio
import anyio.abc
import msgspec
import nats.errors
import nkeys
import structlog
from nats.aio.client import Client as NATS
from structlog.typing import FilteringBoundLogger

from plait.protocol import nats_jwt, nats_xkey
from plait_executor.task_grants import GrantRefused, verify
from plait_executor.task_permissions import task_permissions

AUTH_CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
CALLOUT_QUEUE = "plait-task-callout"
REQUEST_AUDIENCE = "nats-authorization-request"
CONFIG_ACCOUNT = "$G"  # the account of users in a server-config (not operator) mode without accounts

log: FilteringBoundLogger = structlog.get_logger("plait.executor.callout")


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """The signed response to send (empty: the request could not be read, send nothing) and what to log."""

    response: bytes
    granted: dict[str, Any] | None = None  # the attempts a user was made for
    refused: str = ""  # why not
    client: dict[str, Any] = msgspec.field(default_factory=dict)  # where the connection came from


def answer(request: bytes, key: nkeys.KeyPair, now: float, account: str = CONFIG_ACCOUNT) -> Answer:
    """The callout's answer to one authorization request (a JWT signed by the asking server)."""
    try:
        claims = nats_jwt.decode(request.decode(errors="replace"), nats_jwt.SERVER_PREFIX)
    except nats_jwt.JwtInvalid as exc:
        return Answer(response=b"", refused=f"unreadable authorization request: {exc}")
    asked = _mapping(claims.get("nats"))
    user, server = asked.get("user_nkey"), _mapping(asked.get("server_id")).get("id")
    info = _mapping(asked.get("client_info"))
    client = {"host": info.get("host", ""), "client_name": info.get("name", ""), "client_id": info.get("id", 0)}
    if claims.get("aud") != REQUEST_AUDIENCE or not isinstance(user, str) or not isinstance(server, str):
        return Answer(response=b"", refused="not an authorization request", client=client)
    if claims.get("sub") != nats_jwt.public_key(key):
        return Answer(response=b"", refused="an authorization request for another issuer", client=client)
    token = _mapping(asked.get("connect_opts")).get("auth_token")

    def respond(**outcome: str) -> bytes:
        return nats_jwt.encode(nats_jwt.authorization_response_claims(user, server, **outcome), key, now=now).encode()

    if not isinstance(token, str) or not token:
        why = "no task grant (connect with the grant as a token: PLAIT_NATS_TOKEN_FILE)"
        return Answer(response=respond(error=why), refused=why, client=client)
    try:
        grant = verify(token, key, now)
    except GrantRefused as exc:
        return Answer(response=respond(error=str(exc)), refused=str(exc), client=client)
    publish, subscribe = task_permissions(grant)
    name = f"task {grant.project}/{grant.domain} {grant.execution_id} {grant.node}"
    user_jwt = nats_jwt.user_claims(
        user, account=account, name=name, publish=publish, subscribe=subscribe, expires_at=grant.expires_at
    )
    signed = nats_jwt.encode(user_jwt, key, now=now)
    granted = {"execution": grant.execution_id, "node": grant.node, "attempts": list(grant.attempts)}
    return Answer(response=respond(user_jwt=signed), granted=granted, client=client)


def answer_message(data: bytes, headers: dict[str, str] | None, key: nkeys.KeyPair, now: float) -> Answer:
    """``answer`` to a request as nats-server sends it: sealed to the callout's curve key when the request names
    the server's (``Nats-Server-Xkey``, with ``auth_callout { xkey }``), its answer then sealed back to it."""
    server_xkey = (headers or {}).get(nats_xkey.SERVER_XKEY_HEADER, "")
    if not server_xkey:
        return answer(data, key, now)
    curve = nats_xkey.callout_curve_key(key)
    try:
        request = nats_xkey.open_sealed(data, curve, server_xkey)
    except nats_xkey.XkeyInvalid as exc:
        return Answer(response=b"", refused=f"unreadable authorization request: {exc}")
    reply = answer(request, key, now)
    if not reply.response:
        return reply
    return msgspec.structs.replace(reply, response=nats_xkey.seal(reply.response, curve, server_xkey))


async def serve_task_callout(
    nc: NATS, key: nkeys.KeyPair, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Answer authorization requests on ``nc`` until cancelled."""
    subscription = await nc.subscribe(AUTH_CALLOUT_SUBJECT, queue=CALLOUT_QUEUE)
    log.info("task_callout_started", issuer=nats_jwt.public_key(key), xkey=nats_xkey.callout_xkey(key))
    task_status.started()
    try:
        async for msg in subscription.messages:
            reply = answer_message(msg.data, msg.headers, key, time.time())
            if reply.granted is not None:
                log.info("task_credential_granted", **reply.granted, **reply.client)
            else:
                log.warning("task_credential_refused", reason=reply.refused, **reply.client)
            if reply.response and msg.reply:
                await msg.respond(reply.response)
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
