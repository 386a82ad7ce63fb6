"""Signing keys: the formats a key file may have, the errors that name what is wrong, and the home stack's key."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from plait.errors import InputError
from plait.protocol import signing
from plait.settings import Settings
from plait_cli.home_keys import home_key_paths, use_home_keys


def test_a_key_file_may_be_pem_a_raw_seed_or_a_hex_seed(tmp_path: Path) -> None:
    signer = signing.Signer.generate()
    seed = signer.private.private_bytes_raw()
    for name, data in {"pem": signer.private_pem(), "raw": seed, "hex": seed.hex().encode() + b"\n"}.items():
        (tmp_path / name).write_bytes(data)
        assert signing.load_signer(tmp_path / name).key_id == signer.key_id, name
    (tmp_path / "short").write_bytes(b"0123")
    with pytest.raises(InputError, match="neither PEM nor a 32-byte Ed25519 seed"):
        signing.load_signer(tmp_path / "short")
    with pytest.raises(InputError, match="cannot read"):
        signing.load_signer(tmp_path / "absent")


def test_a_trust_store_accepts_its_keys_signatures_only(tmp_path: Path) -> None:
    ours, theirs = signing.Signer.generate(), signing.Signer.generate()
    store = signing.TrustStore.from_hex(["# auditors' keys", *signing.TrustStore([ours.public]).lines()])
    data = b'{"a":1}'
    assert store.check("s", data, ours.headers("s", data)) is None
    assert (store.check("s", data, theirs.headers("s", data)) or "").startswith("unknown_key:")
    assert (store.check("s", b'{"a":2}', ours.headers("s", data)) or "").startswith("bad_signature:")
    assert (store.check("t", data, ours.headers("s", data)) or "").startswith("bad_signature:")
    assert (store.check("s", data, {}) or "").startswith("unsigned:")
    with pytest.raises(InputError, match="trust store line 1"):
        signing.TrustStore.from_hex(["not-hex"])


def test_records_are_signed_and_checked_as_any_ed25519_implementation_does() -> None:
    signer = signing.Signer.generate()
    data = b'{"a":1}'
    headers = signer.headers("s", data)
    # Ed25519 is deterministic: the signature is the one ``cryptography`` makes, and it verifies there.
    expected = signer.private.sign(signing.signed_bytes("s", data))
    assert base64.b64decode(headers[signing.PLAIT_SIG]) == expected
    signer.public.verify(expected, signing.signed_bytes("s", data))
    store = signing.TrustStore([signer.public])
    short = {**headers, signing.PLAIT_SIG: base64.b64encode(expected[:40]).decode()}
    assert (store.check("s", data, short) or "").startswith("bad_signature:")
    assert (store.check("s", data, {**headers, signing.PLAIT_SIG: "not base64!"}) or "").startswith("bad_signature:")


def test_the_home_stack_signs_with_a_key_made_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (signing.SIGNING_KEY_FILE, signing.TRUST_STORE):
        monkeypatch.setenv(variable, "")  # so that what use_home_keys sets is undone after the test
        monkeypatch.delenv(variable)
    settings = Settings(home=str(tmp_path))
    try:
        use_home_keys(settings)
        key_file, trust_file = home_key_paths(settings)
        signer = signing.process_signer()
        assert signer is not None and signer.key_id in trust_file.read_text()
        assert (key_file.stat().st_mode & 0o777) == 0o600
        monkeypatch.delenv(signing.SIGNING_KEY_FILE)
        use_home_keys(settings)
        assert signing.load_signer(key_file).key_id == signer.key_id and len(trust_file.read_text().splitlines()) == 1
    finally:
        signing.process_signer.cache_clear()
