"""Which dispatches an executor runs: with a trust store (``PLAIT_TRUST_STORE``), only those a trusted key signed."""

from __future__ import annotations

import functools

from nats.aio.msg import Msg

from plait.errors import InputError
from plait.protocol import signing


class UntrustedDispatch(InputError):
    """A dispatch whose signature is missing, by an unknown key, or wrong."""


@functools.cache
def trust_store() -> signing.TrustStore | None:
    return signing.process_trust_store()


def refusal(msg: Msg) -> UntrustedDispatch | None:
    """Why the dispatch must not run, or None (always None without a trust store)."""
    trust = trust_store()
    if trust is None:
        return None
    why = trust.check(msg.subject, msg.data, msg.headers)
    return None if why is None else UntrustedDispatch(f"dispatch refused: {why}")
