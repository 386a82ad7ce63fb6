"""A task grant: the bearer token a Kubernetes attempt's pod connects to NATS with, naming what it may act on.

The executor issues one per Job (one attempt, or the item attempts of one map Job) and signs it with the account
key of the NATS auth callout (``PLAIT_NATS_CALLOUT_SEED_FILE``); the callout (``task_callout``) checks it and lets
the connection do what those attempts need and nothing more (``task_permissions``). Signing with the callout's key
adds no holder of power: whoever has that key can already sign any user of the account.

A grant is ``plait-grant-v1.<base64url JSON>.<base64url Ed25519 signature>``, the signature over a fixed prefix and
the JSON. It is not a secret's value to log: only its project, domain, execution, node and attempts are.
"""

from __future__ import annotations

import base64
import binascii

import msgspec
import nkeys

from plait.core.dispatch import Dispatch

PREFIX = "plait-grant-v1"
_SIGNED = b"plait-task-grant-v1\n"
MARGIN_SECONDS = 3600
"""How long a grant outlives its attempt's timeout: time for the pod to be scheduled, pull its image and report."""
UNTIMED_SECONDS = 7 * 24 * 3600
"""How long the grant of an attempt whose task sets no timeout lasts."""
LONGEST_GRANT = 7 * 24 * 3600 + MARGIN_SECONDS


class TaskGrant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project: str
    domain: str
    execution_id: str
    node: str
    attempts: tuple[str, ...]  # one, or a map Job's items
    map_job: bool = False  # its attempts report on their node's scope (one Secret serves every pod of the Job)
    dynamic: bool = False  # a @dynamic task registers the tasks it generates
    expires_at: int  # Unix seconds


class GrantRefused(ValueError):
    """A token that is no valid grant: the message says why (malformed, bad signature, expired), never its bytes."""


_decoder = msgspec.json.Decoder(TaskGrant)


def grant_for(dispatches: tuple[Dispatch, ...] | list[Dispatch], now: float, *, map_job: bool = False) -> TaskGrant:
    """The grant of the Job running ``dispatches`` (attempts of one node of one execution, the items of a map Job
    when ``map_job``), issued at ``now``."""
    first = dispatches[0]
    timeout = first.task.timeout_seconds
    lifetime = UNTIMED_SECONDS if timeout is None else min(timeout, UNTIMED_SECONDS)
    return TaskGrant(
        project=first.project,
        domain=first.domain,
        execution_id=first.execution_id,
        node=first.node,
        attempts=tuple(dispatch.attempt_id for dispatch in dispatches),
        map_job=map_job,
        dynamic=first.task.dynamic is True,
        expires_at=int(now + lifetime + MARGIN_SECONDS),
    )


def issue(grant: TaskGrant, key: nkeys.KeyPair) -> str:
    body = msgspec.json.encode(grant)
    return f"{PREFIX}.{_b64(body)}.{_b64(key.sign(_SIGNED + body))}"


def verify(token: str, key: nkeys.KeyPair, now: float) -> TaskGrant:
    """The grant ``token`` holds, once signed by ``key`` and not expired at ``now``; ``GrantRefused`` otherwise."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise GrantRefused(f"not a task grant (it starts with {PREFIX}. and has three parts)")
    try:
        body, signature = _unb64(parts[1]), _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise GrantRefused("malformed task grant (bad base64)") from None
    try:
        key.verify(_SIGNED + body, signature)
    except (nkeys.ErrInvalidSignature, ValueError):
        raise GrantRefused("task grant not signed by this deployment's callout key") from None
    try:
        grant = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise GrantRefused(f"malformed task grant: {exc}") from None
    if not grant.attempts:
        raise GrantRefused("task grant names no attempt")
    if grant.expires_at <= now:
        raise GrantRefused(f"task grant expired {int(now - grant.expires_at)} s ago")
    if grant.expires_at > now + LONGEST_GRANT:
        raise GrantRefused("task grant lasts longer than any grant is issued for")
    return grant


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
