"""``plait dev --secure``: the embedded nats-server with the users and permissions of deploy/nats/tenants.conf.

Each user's password is generated once into ``PLAIT_HOME/secrets/<user>.password`` (readable by this user only),
and the task pods' auth callout key into ``PLAIT_HOME/secrets/nats-callout.seed``; nats-server reads the passwords
and the key's public halves (its signing key and its curve key) from its environment. The stack makes the streams
as ``plait-operator`` (the only user that may), then the services connect as ``plait-services``; other commands
connect as whoever ``PLAIT_NATS_USER`` and ``PLAIT_NATS_PASSWORD_FILE`` name.
"""

from __future__ import annotations

import os
import secrets
from importlib import resources
from pathlib import Path

import msgspec

from plait.adapters.connection import connect
from plait.adapters.nats_auth import NatsAuth
from plait.adapters.streams import ensure_streams
from plait.protocol import nats_jwt, nats_xkey
from plait.settings import Settings
from plait_cli.nats_commands import ISSUER_VARIABLE, XKEY_VARIABLE

TENANTS_CONF = "nats_tenants.conf"
PASSWORD_VARIABLES = {
    "plait-operator": "PLAIT_NATS_OPERATOR_PASSWORD",
    "plait-services": "PLAIT_NATS_SERVICES_PASSWORD",
    "plait-auditor": "PLAIT_NATS_AUDITOR_PASSWORD",
    "alpha-development": "PLAIT_NATS_ALPHA_PASSWORD",
    "beta-development": "PLAIT_NATS_BETA_PASSWORD",
}
SERVICES_USER = "plait-services"
OPERATOR_USER = "plait-operator"


def password_file(home: Path, user: str) -> Path:
    return home / "secrets" / f"{user}.password"


def callout_seed_file(home: Path) -> Path:
    """The account NKey seed of the task pods' auth callout (the services sign task grants and answers with it)."""
    return home / "secrets" / "nats-callout.seed"


def secure_nats_config(home: Path, nats_dir: Path) -> tuple[str, dict[str, str]]:
    """What the embedded nats-server's configuration includes to authenticate every user of tenants.conf (written
    into ``nats_dir``), and the environment that gives it their passwords (each made if missing)."""
    folder = home / "secrets"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {}
    for user, variable in PASSWORD_VARIABLES.items():
        path = password_file(home, user)
        if not path.exists():
            _write_private(path, "pw" + secrets.token_hex(16) + "\n")  # a bare word: nats-server parses values
        env[variable] = path.read_text().strip()
    seed = callout_seed_file(home)
    if not seed.exists():
        _write_private(seed, nats_jwt.new_seed().decode() + "\n")
    callout = nats_jwt.read_account_key(str(seed), str(seed))
    env[ISSUER_VARIABLE] = nats_jwt.public_key(callout)
    env[XKEY_VARIABLE] = nats_xkey.callout_xkey(callout)
    (nats_dir / "tenants.conf").write_text(resources.files("plait_cli").joinpath(TENANTS_CONF).read_text())
    return 'include "tenants.conf"', env


def as_services(settings: Settings) -> Settings:
    """``settings`` of a service of the secured embedded stack (its executor answers the task pods' callout)."""
    home = settings.home_path
    return msgspec.structs.replace(
        settings,
        nats_user=SERVICES_USER,
        nats_password_file=str(password_file(home, SERVICES_USER)),
        nats_callout_seed_file=str(callout_seed_file(home)),
    )


async def ensure_streams_as_operator(home: Path, nats_url: str) -> None:
    """What ``plait streams ensure`` does, as the operator of the secured embedded stack."""
    operator = NatsAuth(user=OPERATOR_USER, password_file=str(password_file(home, OPERATOR_USER)))
    nc = await connect(nats_url, "plait-dev-streams", auth=operator)
    try:
        await ensure_streams(nc.jetstream())
    finally:
        await nc.close()


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def secure_dev_usage(home: Path) -> str:
    """How to connect to the secured embedded stack, for ``plait dev --secure`` to print."""
    client = password_file(home, "alpha-development")
    operator = password_file(home, OPERATOR_USER)
    return (
        "  NATS asks for a user (deploy/nats/tenants.conf); passwords are in "
        f"{home / 'secrets'}\n"
        f"  as project alpha: PLAIT_PROJECT=alpha PLAIT_NATS_USER=alpha-development PLAIT_NATS_PASSWORD_FILE={client}\n"
        f"  as the operator:  PLAIT_NATS_USER=plait-operator PLAIT_NATS_PASSWORD_FILE={operator}"
    )
