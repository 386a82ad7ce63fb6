"""How a process proves who it is to NATS: user and password, token, NKey, JWT ``.creds``, TLS.

Secrets come from files only (a password or token in a variable or a profile would end up in process listings,
shell histories and dumps of the settings); nats-py reads the NKey seed and the ``.creds`` file itself. Nothing
here logs or raises a secret: an error names the setting and the file, never what the file holds.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import msgspec

from plait.errors import InputError
from plait.protocol import subjects
from plait.settings import VARIABLES, Settings, profile_settings

INBOX_ROOT = "_INBOX"


class NatsAuth(msgspec.Struct, frozen=True, kw_only=True):
    """The NATS credentials and TLS files of one process (the ``nats_*`` settings)."""

    user: str = ""
    password_file: str = ""
    token_file: str = ""
    nkey_seed_file: str = ""
    creds: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_hostname: str = ""

    @classmethod
    def of(cls, settings: Settings) -> NatsAuth:
        return cls(
            user=settings.nats_user,
            password_file=settings.nats_password_file,
            token_file=settings.nats_token_file,
            nkey_seed_file=settings.nats_nkey_seed_file,
            creds=settings.nats_creds,
            tls_ca=settings.nats_tls_ca,
            tls_cert=settings.nats_tls_cert,
            tls_key=settings.nats_tls_key,
            tls_hostname=settings.nats_tls_hostname,
        )

    def options(self) -> dict[str, Any]:
        """``nats.connect`` keyword arguments for these credentials; ``InputError`` naming the setting whose file
        is missing, or for settings that contradict each other."""
        ways = [name for name in ("password_file", "token_file", "nkey_seed_file", "creds") if getattr(self, name)]
        if len(ways) > 1:
            raise InputError(f"{' and '.join(_variable(w) for w in ways)} are set: NATS takes one way to authenticate")
        if bool(self.user) != bool(self.password_file):
            raise InputError("PLAIT_NATS_USER and PLAIT_NATS_PASSWORD_FILE go together: set both or neither")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InputError("PLAIT_NATS_TLS_CERT and PLAIT_NATS_TLS_KEY go together: set both or neither")
        options: dict[str, Any] = {}
        if self.user:
            options["user"], options["password"] = self.user, _secret(self.password_file, "password_file")
        if self.token_file:
            options["token"] = _secret(self.token_file, "token_file")
        if self.nkey_seed_file:
            options["nkeys_seed"] = str(_existing(self.nkey_seed_file, "nkey_seed_file"))
        if self.creds:
            options["user_credentials"] = str(_existing(self.creds, "creds"))
        if self.tls_ca or self.tls_cert:
            options["tls"] = self.tls_context()
        if self.tls_hostname:
            options["tls_hostname"] = self.tls_hostname
        return options

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context that verifies the server (with ``tls_ca``, else the system's CAs) and presents the
        client certificate, if any."""
        ca = str(_existing(self.tls_ca, "tls_ca")) if self.tls_ca else None
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
            if self.tls_cert:
                cert, key = _existing(self.tls_cert, "tls_cert"), _existing(self.tls_key, "tls_key")
                context.load_cert_chain(str(cert), str(key))
        except ssl.SSLError as exc:
            raise InputError(f"cannot load the NATS TLS files ({_variable('tls_ca')}, …): {exc.reason}") from None
        return context


def current_auth() -> NatsAuth:
    """The credentials of this process: its profile's, then its ``PLAIT_NATS_*`` variables."""
    return NatsAuth.of(profile_settings())


def tenant_inbox(project: str, domain: str) -> str:
    """The inbox prefix of a client of one project and domain: its replies come to ``_INBOX.<project>.<domain>.…``,
    so that a NATS permission can let it subscribe to its own replies only."""
    return f"{INBOX_ROOT}.{subjects.tenant(project, domain)}"


def attempt_inbox(project: str, domain: str, attempt_id: str) -> str:
    """The inbox prefix of a Kubernetes attempt's task runtime: ``_INBOX.<project>.<domain>.<hash of the attempt>``,
    so that its per-attempt credential may subscribe to its own replies only (not its project clients')."""
    return f"{tenant_inbox(project, domain)}.{subjects.attempt_token(attempt_id)}"


def redacted(url: str) -> str:
    """``url`` without the password or token it may carry (``nats://user:secret@host``)."""
    parsed = urlparse(url)
    if not parsed.username and not parsed.password:
        return url
    host = parsed.hostname or ""
    netloc = f"***@{host}:{parsed.port}" if parsed.port else f"***@{host}"
    return urlunparse(parsed._replace(netloc=netloc))


def redacted_urls(urls: str) -> str:
    """A comma-separated list of URLs, each ``redacted``."""
    return ",".join(redacted(url.strip()) for url in urls.split(","))


def carries_credential(urls: str) -> bool:
    """Whether a URL of ``urls`` (comma-separated) holds a user, password or token (``nats://user:secret@host``)."""
    return any("@" in _split(url.strip())[1] for url in urls.split(","))


def without_credential(urls: str) -> str:
    """``urls`` (comma-separated), each without the user, password or token it may hold: what a Kubernetes Job's
    pods may be given to connect with, its spec being readable by anyone who may read Jobs and by the task's code."""
    return ",".join(_without_userinfo(url.strip()) for url in urls.split(","))


def _without_userinfo(url: str) -> str:
    scheme, authority, path = _split(url)
    return f"{scheme}{authority.rpartition('@')[2]}{path}"


def _split(url: str) -> tuple[str, str, str]:
    """``url`` as its scheme (with ``://``, empty when it has none), its authority, and the rest."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    return scheme + separator, authority, slash + path


def _variable(field: str) -> str:
    return VARIABLES[f"nats_{field}"]


def _existing(path: str, field: str) -> Path:
    found = Path(path).expanduser()
    if not found.is_file():
        raise InputError(f"{_variable(field)} names {path}, which is not a readable file")
    return found


def _secret(path: str, field: str) -> str:
    try:
        return _existing(path, field).read_text().strip()
    except OSError as exc:
        raise InputError(f"cannot read {_variable(field)} ({path}): {exc.strerror}") from None
