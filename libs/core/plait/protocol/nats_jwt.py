"""NATS JWTs (the nats-io/jwt v2 format) and NKeys: what an auth callout service reads and answers.

A JWT is ``base64url(header) . base64url(claims) . base64url(signature)``, the header ``{"typ":"JWT",
"alg":"ed25519-nkey"}``, the signature Ed25519 over the first two parts by the key whose public NKey is the claims'
``iss``. An NKey is base32 of a prefix byte (``A`` account, ``U`` user, ``N`` server...), the 32-byte key and a
CRC-16; a seed is the same for a private key (``SA...`` for an account).

Only what plait needs is here: decoding and verifying a token, and encoding user and authorization-response claims.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nkeys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from plait.errors import InputError

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
CLAIMS_VERSION = 2
NO_LIMIT = -1
ACCOUNT_PREFIX, USER_PREFIX, SERVER_PREFIX = "A", "U", "N"


class JwtInvalid(ValueError):
    """A token that is not a NATS JWT, or whose signature does not match its issuer."""


def new_seed(prefix: int = nkeys.PREFIX_BYTE_ACCOUNT) -> bytes:
    """A fresh NKey seed (an account's by default): ``SA...``."""
    return bytes(nkeys.encode_seed(os.urandom(32), prefix))


def account_key(seed: bytes) -> nkeys.KeyPair:
    """The account key pair of ``seed``; ``InputError`` if it is not an account NKey seed."""
    try:
        key = nkeys.from_seed(bytearray(seed.strip()))
    except (nkeys.NkeysError, binascii.Error, ValueError) as exc:
        raise InputError(f"not an NKey seed: {type(exc).__name__}") from None
    if not public_key(key).startswith(ACCOUNT_PREFIX):
        raise InputError("not an account NKey seed (an account's seed starts with SA)")
    return key


def read_account_key(path: str, variable: str) -> nkeys.KeyPair:
    """The account key pair in the seed file ``path``; ``InputError`` naming ``variable`` and the file otherwise
    (never what it holds)."""
    try:
        seed = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {variable} ({path}): {exc.strerror}") from None
    try:
        return account_key(seed)
    except InputError as exc:
        raise InputError(f"{variable} ({path}) holds {exc}") from None


def public_key(key: nkeys.KeyPair) -> str:
    return bytes(key.public_key).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verifying_key(public: str) -> Ed25519PublicKey:
    """The Ed25519 key of a public NKey; ``JwtInvalid`` if it is not one (bad base32 or checksum)."""
    try:
        raw = base64.b32decode(public + "=" * (-len(public) % 8))
    except (binascii.Error, ValueError):
        raise JwtInvalid("issuer is not an NKey") from None
    if len(raw) != 35 or int.from_bytes(raw[-2:], "little") != nkeys.crc16(bytearray(raw[:-2])):
        raise JwtInvalid("issuer is not an NKey (length or checksum)")
    return Ed25519PublicKey.from_public_bytes(raw[1:33])


def encode(claims: dict[str, Any], issuer: nkeys.KeyPair, *, now: float | None = None) -> str:
    """``claims`` signed by ``issuer`` (its ``iss``, ``iat`` and ``jti`` set here)."""
    body = {**claims, "iss": public_key(issuer), "iat": int(time.time() if now is None else now)}
    body.pop("jti", None)
    body["jti"] = base64.b32encode(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()).decode()
    head = _b64(json.dumps(HEADER, separators=(",", ":")).encode())
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    signed = f"{head}.{payload}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def decode(token: str, issuer_prefix: str) -> dict[str, Any]:
    """The claims of ``token``, once its header and its signature by its ``iss`` (a public NKey starting with
    ``issuer_prefix``) are checked; ``JwtInvalid`` saying what is wrong otherwise."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtInvalid("not a JWT (three dot-separated parts)")
    try:
        header, claims, signature = json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1])), _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise JwtInvalid("not a JWT (bad base64 or JSON)") from None
    if not isinstance(header, dict) or str(header.get("alg", "")).lower() != HEADER["alg"]:
        raise JwtInvalid("not an ed25519-nkey JWT")
    if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
        raise JwtInvalid("no issuer")
    if not claims["iss"].startswith(issuer_prefix):
        raise JwtInvalid(f"issuer is not a {issuer_prefix}... NKey")
    try:
        verifying_key(claims["iss"]).verify(signature, f"{parts[0]}.{parts[1]}".encode())
    except InvalidSignature:
        raise JwtInvalid("bad signature") from None
    return claims


def user_claims(
    user: str,
    *,
    account: str,
    name: str,
    publish: Sequence[str],
    subscribe: Sequence[str],
    expires_at: int,
) -> dict[str, Any]:
    """A user JWT's claims (before signing): user NKey ``user`` placed in ``account`` (in server-config mode, the
    account's name), allowed to publish and subscribe to those subjects only, until ``expires_at`` (Unix seconds)."""
    return {
        "sub": user,
        "aud": account,
        "name": name,
        "exp": expires_at,
        "nats": {
            "pub": {"allow": list(publish)},
            "sub": {"allow": list(subscribe)},
            "subs": NO_LIMIT,
            "data": NO_LIMIT,
            "payload": NO_LIMIT,
            "type": "user",
            "version": CLAIMS_VERSION,
        },
    }


def authorization_response_claims(user: str, server_id: str, *, user_jwt: str = "", error: str = "") -> dict[str, Any]:
    """An auth callout's answer (before signing) for user NKey ``user`` to server ``server_id``: the user's JWT,
    or an error saying why it is refused (exactly one of them)."""
    if bool(user_jwt) == bool(error):
        raise ValueError("an authorization response holds a user JWT or an error, not both")
    answer: dict[str, Any] = {"type": "authorization_response", "version": CLAIMS_VERSION}
    answer.update({"jwt": user_jwt} if user_jwt else {"error": error})
    return {"sub": user, "aud": server_id, "nats": answer}
