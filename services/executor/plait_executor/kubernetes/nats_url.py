"""The NATS URL a Job's pods connect to, without a credential: a Job's spec is readable by anyone who may read
Jobs, and by the task's code from its environment."""

from __future__ import annotations


def carries_credential(urls: str) -> bool:
    """Whether a URL of ``urls`` (comma-separated) holds a user, password or token (``nats://user:secret@host``)."""
    return any("@" in _split(url.strip())[1] for url in urls.split(","))


def without_credential(urls: str) -> str:
    """``urls`` (comma-separated), each without the user, password or token it may hold."""
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
