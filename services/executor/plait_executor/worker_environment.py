"""What a worker process keeps of its executor's environment: no credential of the executor's (the NATS and
database URLs, which may hold a password or token, and any other ``PLAIT_*`` variable naming a credential), and no
task secret. The executor reports each attempt on the worker's behalf, so a task needs none of them; the secrets its
task declared reach it with the attempt, on its pipe (see ``plait.sdk.secrets``)."""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

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
