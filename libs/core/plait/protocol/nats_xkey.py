"""NATS curve keys ("xkeys", ``X...``): the auth callout's requests and answers sealed between nats-server and the
executors, so that a task grant, and the user made from it, never cross the wire in the clear.

nats-server seals each authorization request to the callout's public curve key (``auth_callout { xkey }``) with a
one-time key of its own, named in the request's ``Nats-Server-Xkey`` header; the callout opens it and seals its
answer to that key. A sealed message is ``xkv1``, a 24-byte nonce, then a NaCl box (Curve25519, XSalsa20-Poly1305),
as nkeys (Go) writes it. The callout's curve key is derived from its account NKey seed, the one secret the executors
already hold (``PLAIT_NATS_CALLOUT_SEED_FILE``); ``callout_xkey`` is the public key nats-server is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

import nacl.exceptions
import nacl.public
import nkeys

CURVE_PREFIX = 23 << 3  # an encoded public curve key starts with "X"
SEALED_VERSION = b"xkv1"
NONCE_BYTES = 24
SERVER_XKEY_HEADER = "Nats-Server-Xkey"
_DERIVATION = b"plait auth callout xkey v1"


class XkeyInvalid(ValueError):
    """Not a public curve key, or a sealed message that does not open (bad format, wrong keys, altered)."""


def callout_curve_key(key: nkeys.KeyPair) -> nacl.public.PrivateKey:
    """The callout's curve key, derived from its account key pair's seed."""
    _, raw = nkeys.decode_seed(key.seed)
    return nacl.public.PrivateKey(hashlib.sha256(_DERIVATION + bytes(raw)).digest())


def callout_xkey(key: nkeys.KeyPair) -> str:
    """The public curve key nats-server seals the callout's requests to (``auth_callout { xkey }``)."""
    return encode_public(callout_curve_key(key).public_key)


def encode_public(key: nacl.public.PublicKey) -> str:
    """A public curve key as nats-server's configuration takes it: ``X`` and base32, with a CRC-16."""
    body = bytearray([CURVE_PREFIX]) + bytes(key)
    body += nkeys.crc16(body).to_bytes(2, "little")
    return base64.b32encode(bytes(body)).decode().rstrip("=")


def decode_public(text: str) -> nacl.public.PublicKey:
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise XkeyInvalid("not a curve key (bad base32)") from None
    if len(raw) != 35 or raw[0] != CURVE_PREFIX:
        raise XkeyInvalid("not a curve key (an X... key of 32 bytes)")
    if int.from_bytes(raw[-2:], "little") != nkeys.crc16(bytearray(raw[:-2])):
        raise XkeyInvalid("not a curve key (bad checksum)")
    return nacl.public.PublicKey(raw[1:33])


def seal(message: bytes, sender: nacl.public.PrivateKey, recipient: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    box = nacl.public.Box(sender, decode_public(recipient))
    return SEALED_VERSION + nonce + box.encrypt(message, nonce).ciphertext


def open_sealed(sealed: bytes, receiver: nacl.public.PrivateKey, sender: str) -> bytes:
    if not sealed.startswith(SEALED_VERSION) or len(sealed) < len(SEALED_VERSION) + NONCE_BYTES:
        raise XkeyInvalid("not a sealed message (xkv1)")
    nonce = sealed[len(SEALED_VERSION) : len(SEALED_VERSION) + NONCE_BYTES]
    try:
        return nacl.public.Box(receiver, decode_public(sender)).decrypt(
            sealed[len(SEALED_VERSION) + NONCE_BYTES :], nonce
        )
    except nacl.exceptions.CryptoError:
        raise XkeyInvalid("a sealed message that does not open with these keys") from None
