"""What a worker process keeps of its executor's environment: no credential of the executor's (the NATS and
database URLs, which may hold a password or token, and any other ``PLAIT_*`` variable naming a credential), and no
task secret. The executor reports each attempt on the worker's behalf, so a task needs none of them; the secrets its
task declared reach it with the attempt, on its pipe (see ``plait.sdk.secrets``)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

from plait.sdk.secrets import DIR_VARIABLE, ENV_PREFIX

CREDENTIAL = re.compile(r"PLAIT_\w*(URL|CREDS|CREDENTIALS|TOKEN|KEY|PASSWORD|SECRET|SEED|NKEY|JWT)\w*")


def withheld(name: str) -> bool:
    """Whether a worker process must not see environment variable ``name``."""
    return name.startswith(ENV_PREFIX) or name == DIR_VARIABLE or CREDENTIAL.fullmatch(name) is not None


def scrub(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Remove the withheld variables from ``environ``; their names."""
    names = [name for name in environ if withheld(name)]
    for name in names:
        del environ[name]
    return names


@dataclass(frozen=True, slots=True)
class Surroundings:
    """A worker process's working directory and environment as an attempt found them."""

    cwd: str
    environ: dict[bytes, bytes]


def surroundings() -> Surroundings:
    return Surroundings(os.getcwd(), dict(_encoded_environ()))


@contextlib.contextmanager
def surroundings_kept() -> Iterator[None]:
    """Around a task's call: what it changes of its worker's working directory and environment is put back after it,
    so a warm worker's next call finds them as this one did; what importing the task's module did stays, as the
    module itself does."""
    before = surroundings()
    try:
        yield
    finally:
        put_back(before)


def put_back(before: Surroundings) -> None:
    """Undo what an attempt changed of its worker's working directory and environment (``os.chdir``,
    ``os.environ``), so the worker's next attempt finds them as this one did."""
    try:
        moved = os.getcwd() != before.cwd
    except OSError:  # the attempt removed the folder it moved to
        moved = True
    if moved:
        with contextlib.suppress(OSError):
            os.chdir(before.cwd)
    if _encoded_environ() != before.environ:
        os.environ.clear()
        os.environ.update({os.fsdecode(name): os.fsdecode(value) for name, value in before.environ.items()})


def _encoded_environ() -> dict[bytes, bytes]:
    """The dict behind ``os.environ``: copying and comparing it takes under a microsecond, against about 20 through
    ``os.environ`` (which decodes each item), and a warm worker does both on every attempt."""
    return os.environ._data  # type: ignore[attr-defined,no-any-return]
