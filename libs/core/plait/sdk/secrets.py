"""Task secrets: named in ``@task(secrets=[...])``, resolved where the attempt runs, read with ``plait.secrets.get``.

A secret is resolved at run time, never carried by a registration, an event or a dispatch (only its name is):

1. the environment variable ``PLAIT_SECRET_<NAME>`` (the name upper-cased, each other character than a letter or a
   digit made ``_``: ``warehouse-password`` is ``PLAIT_SECRET_WAREHOUSE_PASSWORD``);
2. the file ``$PLAIT_SECRETS_DIR/<name>`` (one trailing newline dropped). On Kubernetes, the executor mounts the
   Secret ``<name>`` (its key ``value``) there in the attempt's pod.

A missing secret fails the attempt as the task's own error, naming the secret (never a value). The values an attempt
resolved are redacted from its captured output and its error, and an output holding one fails the attempt.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from plait.errors import PlaitError

ENV_PREFIX = "PLAIT_SECRET_"
DIR_VARIABLE = "PLAIT_SECRETS_DIR"
KUBERNETES_KEY = "value"
"""The key of a Kubernetes Secret whose value is the secret."""
REDACTED = "[redacted secret]"
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
"""A secret's name: a Kubernetes Secret's (lower-case letters, digits, '-' and '.')."""


class SecretMissing(PlaitError):
    """A secret the task declared is set nowhere it is looked for, or one it did not declare is asked for."""


def name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a secret's name (None: nothing)."""
    if not isinstance(name, str) or SECRET_NAME.fullmatch(name) is None:
        return (
            f"secret name {name!r} is not a Kubernetes Secret name "
            "(lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)"
        )
    return None


def env_name(name: str) -> str:
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


def resolve(name: str, environ: Mapping[str, str] = os.environ) -> str:
    """The value of secret ``name`` where this process runs. Raises ``SecretMissing`` naming where it looked."""
    if (value := environ.get(env_name(name))) is not None:
        return value
    directory = environ.get(DIR_VARIABLE)
    if directory:
        path = Path(directory) / name
        try:
            text = path.read_text()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SecretMissing(f"secret '{name}' cannot be read from {path}: {exc.strerror}") from None
        else:
            return text.removesuffix("\n")
    where = f" nor the file {Path(directory) / name}" if directory else f" ({DIR_VARIABLE} is not set)"
    raise SecretMissing(f"secret '{name}' is not set: neither the environment variable {env_name(name)}{where}")


_scope: dict[str, str] | None = None  # the secrets of the attempt running in this process


@contextlib.contextmanager
def attempt_scope() -> Iterator[dict[str, str]]:
    """The secrets of one attempt, by name, while it runs (the outer scope when one is open already)."""
    global _scope
    if _scope is not None:
        yield _scope
        return
    _scope = {}
    try:
        yield _scope
    finally:
        _scope = None


def load(names: Iterable[str]) -> None:
    """Resolve the secrets an attempt's task declared into its scope, unless there already (the executor resolved
    them). Raises ``SecretMissing``."""
    if _scope is None:
        raise RuntimeError("plait.sdk.secrets.load outside an attempt scope")
    for name in names:
        if name not in _scope:
            _scope[name] = resolve(name)


def get(name: str) -> str:
    """The value of secret ``name``, which the running task declared in ``@task(secrets=[...])``. Outside an attempt
    (a task's function called directly, in a test say) it is resolved where this process runs."""
    if _scope is None:
        return resolve(name)
    if name not in _scope:
        raise SecretMissing(f"secret '{name}' is not one this task declared in @task(secrets=[...])")
    return _scope[name]


def redact(text: str, values: Iterable[str]) -> str:
    for value in sorted((value for value in values if value), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def redact_bytes(data: bytes, values: Iterable[str]) -> bytes:
    for value in sorted((value for value in values if value), key=len, reverse=True):
        data = data.replace(value.encode(), REDACTED.encode())
    return data
