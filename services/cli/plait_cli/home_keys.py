"""The signing key of the embedded stack: generated once under PLAIT_HOME, so the default path is signed.

With no ``PLAIT_SIGNING_KEY_FILE`` (and no ``PLAIT_NATS_URL``: a deployment brings its own keys), a command that
uses the home stack signs with ``PLAIT_HOME/keys/signing.pem`` and trusts ``PLAIT_HOME/keys/trust``, both
generated on first use; the services it starts inherit them.
"""

from __future__ import annotations

import os
from pathlib import Path

from plait.protocol import signing
from plait.settings import Settings


def home_key_paths(settings: Settings) -> tuple[Path, Path]:
    keys = settings.home_path / "keys"
    return keys / "signing.pem", keys / "trust"


def use_home_keys(settings: Settings) -> None:
    """Sign with the home key and trust its trust store, unless a key (or a trust store) is configured."""
    if settings.nats_url or os.environ.get(signing.SIGNING_KEY_FILE):
        return
    key_file, trust_file = home_key_paths(settings)
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        signer = signing.Signer.generate()
        with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(signer.private_pem())
        with trust_file.open("a") as trust:
            trust.write(signing.TrustStore([signer.public]).lines()[0] + "\n")
    os.environ[signing.SIGNING_KEY_FILE] = str(key_file)
    if trust_file.exists() and not os.environ.get(signing.TRUST_STORE):
        os.environ[signing.TRUST_STORE] = str(trust_file)
    signing.process_signer.cache_clear()
