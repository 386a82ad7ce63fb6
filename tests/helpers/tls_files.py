"""A throwaway certificate authority, and certificates it signs, made with the openssl command."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Signed:
    cert: Path
    key: Path


def authority(folder: Path, name: str) -> Signed:
    """A self-signed CA: its certificate and key in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
    )  # fmt: skip
    return Signed(cert, key)


def signed(folder: Path, ca: Signed, name: str, *, server: bool) -> Signed:
    """A certificate for ``name`` signed by ``ca``: a server's (for 127.0.0.1 and localhost) or a client's."""
    cert, key, request = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(request), "-subj", f"/CN={name}",
    )  # fmt: skip
    extensions = folder / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    names = "subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else ""
    extensions.write_text(f"{names}extendedKeyUsage={usage}\n")
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
        "-out", str(cert), "-days", "1", "-extfile", str(extensions),
    )  # fmt: skip
    return Signed(cert, key)
