"""Tasks reading a secret (``tests/test_secrets.py``): they print it, log it, raise it, or return it."""

from __future__ import annotations

import logging

from plait import task, workflow
from plait.sdk import secrets

SECRET = "warehouse-password"


@task(secrets=[SECRET])
def connect(user: str) -> str:
    password = secrets.get(SECRET)
    print(f"connecting as {user} with {password}")
    logging.getLogger("warehouse").warning("the password is %s", password)
    return f"connected as {user} with a password of {len(password)} characters"


@task(secrets=[SECRET], system_retries=0)
def fails_loudly(user: str) -> str:
    raise PermissionError(f"login refused for {user} with password {secrets.get(SECRET)}")


@task(secrets=[SECRET], system_retries=0)
def returns_it(user: str) -> str:
    return f"{user}:{secrets.get(SECRET)}"


@task(secrets=["missing-secret"], system_retries=0)
def needs_a_missing_secret() -> int:
    return len(secrets.get("missing-secret"))


@workflow
def load(user: str) -> str:
    return connect(user=user)


@workflow
def load_and_fail(user: str) -> str:
    return fails_loudly(user=user)


@workflow
def load_and_leak(user: str) -> str:
    return returns_it(user=user)


@workflow
def load_without_secret() -> int:
    return needs_a_missing_secret()
