"""Ed25519 signatures of stored records: keys, the trust store auditors pin, signing and checking.

A record is signed over its subject and its exact stored bytes (so the bytes and the ``previous`` chain are those
of an unsigned record, and a signed record moved to another subject no longer verifies). The signature and the
signer's key id travel in the message's headers ``Plait-Sig`` and ``Plait-Key``.

The process signs with the key in ``PLAIT_SIGNING_KEY_FILE`` (a PEM private key, or a file of the 32-byte seed,
raw or hex); ``PLAIT_TRUST_STORE`` names a file of public keys, one a line (hex of the 32 raw bytes, optionally
followed by a comment), that verifications accept. A key id is the first 16 hex digits of the public key's SHA-256.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from plait.errors import InputError

PLAIT_SIG = "Plait-Sig"
PLAIT_KEY = "Plait-Key"
SIGNING_KEY_FILE = "PLAIT_SIGNING_KEY_FILE"
TRUST_STORE = "PLAIT_TRUST_STORE"
_DOMAIN = b"plait-record-v1\n"


def signed_bytes(subject: str, data: bytes) -> bytes:
    """What a record's signature covers: a fixed prefix, its subject, and its stored bytes."""
    return _DOMAIN + subject.encode() + b"\n" + data


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_bytes(key)).hexdigest()[:16]


class Signer:
    """Signs records with one private key.

    Keys are read and written with ``cryptography``; records are signed with libsodium (PyNaCl): the same Ed25519
    signatures (deterministic, RFC 8032), in 19 µs against 28 on the benchmark host (each decision and dispatch is
    signed)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)
        self._signing = SigningKey(private.private_bytes_raw())

    def headers(self, subject: str, data: bytes) -> dict[str, str]:
        """The headers that carry the record's signature and this key's id."""
        signature = self._signing.sign(signed_bytes(subject, data)).signature
        return {PLAIT_SIG: base64.b64encode(signature).decode(), PLAIT_KEY: self.key_id}

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def load_signer(path: Path) -> Signer:
    """The signer of a key file: PEM (PKCS8), or the 32-byte seed raw or in hex. ``InputError`` names the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{SIGNING_KEY_FILE}: cannot read {path}: {exc.strerror}") from None
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{SIGNING_KEY_FILE}: {path} is no unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InputError(f"{SIGNING_KEY_FILE}: {path} holds a {type(key).__name__}, not an Ed25519 key")
        return Signer(key)
    seed = data if len(data) == 32 else data.strip()  # raw bytes may look like whitespace
    if len(seed) == 64:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            seed = bytes.fromhex(seed.decode())
    if len(seed) != 32:
        raise InputError(f"{SIGNING_KEY_FILE}: {path} is neither PEM nor a 32-byte Ed25519 seed (raw or hex)")
    return Signer(Ed25519PrivateKey.from_private_bytes(seed))


class TrustStore:
    """The public keys whose signatures are accepted, by key id; checked with libsodium (PyNaCl: 42 µs a record
    against 89 with ``cryptography`` on the benchmark host; an executor checks every dispatch)."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self.keys = {key_id(key): key for key in keys}
        self._verifying = {kid: VerifyKey(public_bytes(key)) for kid, key in self.keys.items()}

    def __bool__(self) -> bool:
        return bool(self.keys)

    @classmethod
    def from_hex(cls, lines: Iterable[str]) -> TrustStore:
        keys = []
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            token = text.split()[0]
            try:
                keys.append(Ed25519PublicKey.from_public_bytes(bytes.fromhex(token)))
            except ValueError:
                raise InputError(f"trust store line {number}: '{token[:20]}' is no hex Ed25519 public key") from None
        return cls(keys)

    @classmethod
    def load(cls, path: Path) -> TrustStore:
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"{TRUST_STORE}: cannot read {path}: {exc.strerror}") from None
        return cls.from_hex(text.splitlines())

    def lines(self) -> list[str]:
        return [f"{public_bytes(key).hex()}  # {kid}" for kid, key in sorted(self.keys.items())]

    def check(self, subject: str, data: bytes, headers: Mapping[str, str] | None) -> str | None:
        """Why the record's signature is not acceptable ('unsigned: ...', 'unknown_key: ...', 'bad_signature: ...'),
        or None when a trusted key signed exactly these bytes on this subject."""
        headers = headers or {}
        signature, kid = headers.get(PLAIT_SIG, ""), headers.get(PLAIT_KEY, "")
        if not signature or not kid:
            return "unsigned: the record carries no signature"
        key = self._verifying.get(kid)
        if key is None:
            return f"unknown_key: signed by key {kid[:16]}, which is not in the trust store"
        try:
            key.verify(signed_bytes(subject, data), base64.b64decode(signature, validate=True))
        except (BadSignatureError, ValueError):
            return f"bad_signature: the signature of key {kid[:16]} does not match the record's bytes and subject"
        return None


@functools.cache
def process_signer() -> Signer | None:
    """This process's signer, from ``PLAIT_SIGNING_KEY_FILE``; None when it is not set (records go unsigned)."""
    path = os.environ.get(SIGNING_KEY_FILE, "")
    return load_signer(Path(path)) if path else None


def sign_headers(subject: str, data: bytes) -> dict[str, str]:
    """The signature headers of a record this process publishes: {} when it has no key."""
    signer = process_signer()
    return signer.headers(subject, data) if signer is not None else {}


def process_trust_store() -> TrustStore | None:
    """The trust store ``PLAIT_TRUST_STORE`` names; None when it is not set."""
    path = os.environ.get(TRUST_STORE, "")
    return TrustStore.load(Path(path)) if path else None


_encoder = msgspec.json.Encoder()


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """An execution's chain head: its subject held ``count`` records, the last at ``sequence`` with ``digest``."""

    execution_id: str
    subject: str
    count: int
    sequence: int
    digest: str


class SignedCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    checkpoint: Checkpoint
    signature: str
    key_id: str


def checkpoint_subject(record_subject: str) -> str:
    """What a checkpoint of an execution's subject is signed as being about (not where it is published)."""
    return f"checkpoint.{record_subject}"


def sign_checkpoint(signer: Signer, checkpoint: Checkpoint) -> SignedCheckpoint:
    headers = signer.headers(checkpoint_subject(checkpoint.subject), _encoder.encode(checkpoint))
    return SignedCheckpoint(checkpoint=checkpoint, signature=headers[PLAIT_SIG], key_id=headers[PLAIT_KEY])
