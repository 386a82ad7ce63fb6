"""Settings from the environment (``PLAIT_*``), validated when they are read.

``PLAIT_DATABASE_URL`` is left to the catalog's driver (asyncpg), which accepts what libpq does (a Unix
socket: ``postgresql://user@/db?host=/run/postgresql``) and is the only one to use it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import msgspec

from plait.core.dispatch import DISPATCH_CHUNK_ATTEMPTS, DISPATCH_LEAST_CHUNKS
from plait.core.task_output import DEFAULT_OUTPUT_HEAD_BYTES, DEFAULT_OUTPUT_TAIL_BYTES
from plait.core.values import DEFAULT_INLINE_VALUE_LIMIT
from plait.errors import InputError
from plait.profiles import active_profile
from plait.protocol.partitions import MAX_PARTITIONS


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str | None = None
    database_url: str | None = None
    project: str = "default"
    domain: str = "development"
    replica: str = ""
    cluster: str = "local"
    queue: str = "default"
    concurrency: int = 0  # 0: one worker process per core
    stream_replicas: int | None = None  # 3 on a NATS cluster; when unset, existing streams are left as they are
    ack_wait_seconds: float = 5.0  # how long a silent scheduler keeps a message (it heartbeats at a third of it)
    dispatch_ack_wait_seconds: float = 5.0  # the same for a dispatch (its executor heartbeats at a third of it)
    attempt_deadline_seconds: float = 3600.0  # a started attempt with no result and no sign of life this long fails
    dispatch_chunk_attempts: int = DISPATCH_CHUNK_ATTEMPTS  # a scheduler's: most attempts of a decision per dispatch
    dispatch_least_chunks: int = DISPATCH_LEAST_CHUNKS  # a scheduler's: a decision's attempts spread over this many
    state_cache_bytes: int = 128 * 1024 * 1024  # a scheduler's cache of execution states (estimated memory)
    scheduler_partitions: int = 0  # 0: every scheduler replica pulls every command; N: N partitions (docs/scaling.md)
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    home: str = ""
    nats_sync: Literal["always", "default"] = "always"
    embedded_services: Literal["processes", "in-process"] = "processes"  # how the embedded stack runs its services
    cache_reservation_seconds: float = 600.0  # how often a waiting look-up checks the key's holder is still computing
    cache_lookup_seconds: float = 0.5  # how long a scheduler waits for the catalog's cache answer before going on
    executor_backend: Literal["local", "kubernetes"] = "local"  # where an executor runs attempts
    kubernetes_namespace: str = "default"  # the namespace of the Jobs of a Kubernetes executor
    kubernetes_image: str = ""  # the image of tasks that name none (a Kubernetes executor needs it)
    kubernetes_context: str = ""  # the kubeconfig context; empty: the current one, or the in-cluster config
    background_niceness: int = 10  # the embedded catalog's and PostgreSQL's: projecting yields the CPU to scheduling
    principal: str = ""  # who the CLI says aborts or relaunches (empty: user@host)
    inline_value_limit: int = (
        DEFAULT_INLINE_VALUE_LIMIT  # a value whose encoding is larger travels by reference (the values bucket)
    )
    default_task_timeout_seconds: float | None = None  # a scheduler's: the timeout of tasks that set none
    default_cluster: str = ""  # a scheduler's: the cluster of work that names none (empty: PLAIT_CLUSTER's)
    labels: str = ""  # an executor's labels it announces, "key=value,key=value"
    task_output_head: int = DEFAULT_OUTPUT_HEAD_BYTES  # bytes kept from the start of an attempt's output
    task_output_tail: int = DEFAULT_OUTPUT_TAIL_BYTES  # and from its end; what lies between is cut
    worker_max_memory_mb: int = 0  # a local worker whose peak RSS passed this is replaced after its attempt (0: never)
    worker_max_attempts: int = 0  # a local worker is replaced after this many attempts (0: never)
    kubernetes_nats_url: str = ""  # what a Kubernetes executor's pods connect to (empty: its own PLAIT_NATS_URL)
    kubernetes_map_batch_seconds: float = 1.0  # how long a Kubernetes executor gathers a map's items into one Job
    metrics_port: int = 0  # a service's /metrics, /livez and /readyz endpoint (0: none)
    metrics_address: str = "127.0.0.1"  # the address it listens on (0.0.0.0 in deploy/, to be scraped and probed)
    nats_user: str = ""  # NATS authentication (plait.adapters.nats_auth): secrets only from files, never inline
    nats_password_file: str = ""
    nats_token_file: str = ""
    nats_nkey_seed_file: str = ""
    nats_creds: str = ""  # a JWT .creds file
    nats_tls_ca: str = ""  # verify the server with this CA bundle (else the system's, on tls:// URLs)
    nats_tls_cert: str = ""  # a client certificate and its key, for servers that verify clients
    nats_tls_key: str = ""
    nats_tls_hostname: str = ""  # the name the server's certificate must carry (default: the URL's host)
    # an executor's: the account NKey seed of nats-server's auth callout (its public key is `auth_callout { issuer }`):
    # it signs each Kubernetes attempt's task grant and answers the callout (see plait_executor.task_callout)
    nats_callout_seed_file: str = ""

    def __post_init__(self) -> None:
        if self.nats_url is not None:
            for url in self.nats_url.split(","):
                _check_url("PLAIT_NATS_URL", url.strip(), ("nats", "tls", "ws", "wss"))
        if self.stream_replicas not in (None, 1, 3, 5):
            raise InputError(f"PLAIT_STREAM_REPLICAS must be 1, 3 or 5, got {self.stream_replicas}")
        if self.ack_wait_seconds <= 0:
            raise InputError(f"PLAIT_ACK_WAIT_SECONDS must be positive, got {self.ack_wait_seconds}")
        if self.default_task_timeout_seconds is not None and self.default_task_timeout_seconds <= 0:
            raise InputError(
                f"PLAIT_DEFAULT_TASK_TIMEOUT_SECONDS must be positive, got {self.default_task_timeout_seconds}"
            )
        for name in ("dispatch_ack_wait_seconds", "attempt_deadline_seconds"):
            if getattr(self, name) <= 0:
                raise InputError(f"{VARIABLES[name]} must be positive, got {getattr(self, name)}")
        for name in ("dispatch_chunk_attempts", "dispatch_least_chunks"):
            if getattr(self, name) < 1:
                raise InputError(f"{VARIABLES[name]} must be 1 or more, got {getattr(self, name)}")
        if not 0 <= self.scheduler_partitions <= MAX_PARTITIONS:
            raise InputError(
                f"PLAIT_SCHEDULER_PARTITIONS must be 0 (not partitioned) to {MAX_PARTITIONS}, "
                f"got {self.scheduler_partitions}"
            )
        if self.state_cache_bytes < 0:
            raise InputError(f"PLAIT_STATE_CACHE_BYTES must be 0 (no cache) or more, got {self.state_cache_bytes}")
        if self.cache_reservation_seconds <= 0:
            raise InputError(f"PLAIT_CACHE_RESERVATION_SECONDS must be positive, got {self.cache_reservation_seconds}")
        if self.cache_lookup_seconds <= 0:
            raise InputError(f"PLAIT_CACHE_LOOKUP_SECONDS must be positive, got {self.cache_lookup_seconds}")
        if not 0 <= self.background_niceness <= 19:
            raise InputError(f"PLAIT_BACKGROUND_NICENESS must be 0 to 19, got {self.background_niceness}")
        if self.inline_value_limit < 1:
            raise InputError(f"PLAIT_INLINE_VALUE_LIMIT must be 1 byte or more, got {self.inline_value_limit}")
        if self.task_output_head < 0 or self.task_output_tail < 0:
            raise InputError(
                f"PLAIT_TASK_OUTPUT_HEAD and PLAIT_TASK_OUTPUT_TAIL must be 0 bytes or more, got "
                f"{self.task_output_head} and {self.task_output_tail}"
            )
        for name in ("worker_max_memory_mb", "worker_max_attempts"):
            if getattr(self, name) < 0:
                raise InputError(f"{VARIABLES[name]} must be 0 (no limit) or more, got {getattr(self, name)}")
        if self.concurrency < 0:
            raise InputError(f"PLAIT_CONCURRENCY must be 0 (one per core) or more, got {self.concurrency}")
        for url in filter(None, self.kubernetes_nats_url.split(",")):
            _check_url(VARIABLES["kubernetes_nats_url"], url.strip(), ("nats", "tls", "ws", "wss"))
        if not 0 <= self.metrics_port <= 65535:
            raise InputError(f"PLAIT_METRICS_PORT must be 0 (no endpoint) to 65535, got {self.metrics_port}")
        if self.kubernetes_map_batch_seconds < 0:
            raise InputError(
                f"PLAIT_KUBERNETES_MAP_BATCH_SECONDS must be 0 or more, got {self.kubernetes_map_batch_seconds}"
            )

    @property
    def home_path(self) -> Path:
        return Path(self.home) if self.home else Path.home() / ".plait"

    def required(self, field: Literal["nats_url", "database_url"]) -> str:
        """The setting's value; ``InputError`` naming its variable when it is not set."""
        value = getattr(self, field)
        if not value:
            raise InputError(
                f"{VARIABLES[field]} is not set: this service needs an existing server (`plait dev` starts one)"
            )
        return str(value)

    @property
    def replica_name(self) -> str:
        return self.replica or f"{socket.gethostname()}-{os.getpid()}"


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise InputError(f"{name} must look like {schemes[0]}://HOST:PORT, got {url!r}")


VARIABLES = {  # each setting's PLAIT_* variable
    "nats_url": "PLAIT_NATS_URL",
    "database_url": "PLAIT_DATABASE_URL",
    "project": "PLAIT_PROJECT",
    "domain": "PLAIT_DOMAIN",
    "replica": "PLAIT_REPLICA",
    "cluster": "PLAIT_CLUSTER",
    "queue": "PLAIT_QUEUE",
    "concurrency": "PLAIT_CONCURRENCY",
    "ack_wait_seconds": "PLAIT_ACK_WAIT_SECONDS",
    "dispatch_ack_wait_seconds": "PLAIT_DISPATCH_ACK_WAIT_SECONDS",
    "attempt_deadline_seconds": "PLAIT_ATTEMPT_DEADLINE_SECONDS",
    "dispatch_chunk_attempts": "PLAIT_DISPATCH_CHUNK_ATTEMPTS",
    "dispatch_least_chunks": "PLAIT_DISPATCH_LEAST_CHUNKS",
    "state_cache_bytes": "PLAIT_STATE_CACHE_BYTES",
    "scheduler_partitions": "PLAIT_SCHEDULER_PARTITIONS",
    "stream_replicas": "PLAIT_STREAM_REPLICAS",
    "log_format": "PLAIT_LOG_FORMAT",
    "log_level": "PLAIT_LOG_LEVEL",
    "home": "PLAIT_HOME",
    "nats_sync": "PLAIT_NATS_SYNC",
    "embedded_services": "PLAIT_EMBEDDED_SERVICES",
    "cache_reservation_seconds": "PLAIT_CACHE_RESERVATION_SECONDS",
    "cache_lookup_seconds": "PLAIT_CACHE_LOOKUP_SECONDS",
    "background_niceness": "PLAIT_BACKGROUND_NICENESS",
    "executor_backend": "PLAIT_EXECUTOR_BACKEND",
    "kubernetes_namespace": "PLAIT_KUBERNETES_NAMESPACE",
    "kubernetes_image": "PLAIT_KUBERNETES_IMAGE",
    "kubernetes_context": "PLAIT_KUBERNETES_CONTEXT",
    "principal": "PLAIT_PRINCIPAL",
    "inline_value_limit": "PLAIT_INLINE_VALUE_LIMIT",
    "default_cluster": "PLAIT_DEFAULT_CLUSTER",
    "default_task_timeout_seconds": "PLAIT_DEFAULT_TASK_TIMEOUT_SECONDS",
    "labels": "PLAIT_EXECUTOR_LABELS",
    "task_output_head": "PLAIT_TASK_OUTPUT_HEAD",
    "task_output_tail": "PLAIT_TASK_OUTPUT_TAIL",
    "worker_max_memory_mb": "PLAIT_WORKER_MAX_MEMORY_MB",
    "worker_max_attempts": "PLAIT_WORKER_MAX_ATTEMPTS",
    "kubernetes_nats_url": "PLAIT_KUBERNETES_NATS_URL",
    "kubernetes_map_batch_seconds": "PLAIT_KUBERNETES_MAP_BATCH_SECONDS",
    "metrics_port": "PLAIT_METRICS_PORT",
    "metrics_address": "PLAIT_METRICS_ADDRESS",
    "nats_user": "PLAIT_NATS_USER",
    "nats_password_file": "PLAIT_NATS_PASSWORD_FILE",
    "nats_token_file": "PLAIT_NATS_TOKEN_FILE",
    "nats_nkey_seed_file": "PLAIT_NATS_NKEY_SEED_FILE",
    "nats_creds": "PLAIT_NATS_CREDS",
    "nats_tls_ca": "PLAIT_NATS_TLS_CA",
    "nats_tls_cert": "PLAIT_NATS_TLS_CERT",
    "nats_tls_key": "PLAIT_NATS_TLS_KEY",
    "nats_tls_hostname": "PLAIT_NATS_TLS_HOSTNAME",
    "nats_callout_seed_file": "PLAIT_NATS_CALLOUT_SEED_FILE",
}


def load_settings(
    environ: dict[str, str] | None = None, *, profile: Mapping[str, object] | None = None, **overrides: object
) -> Settings:
    """Settings from ``profile`` (a config file's, see ``plait.profiles``), then ``PLAIT_*`` variables, then
    ``overrides``; a bad value raises ``InputError`` naming it."""
    environ = dict(os.environ) if environ is None else environ
    raw: dict[str, object] = dict(profile or {})
    raw.update({field: environ[var] for field, var in VARIABLES.items() if environ.get(var)})
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        for field, var in VARIABLES.items():
            message = message.replace(f"`$.{field}`", var)
        raise InputError(f"invalid setting: {message}") from None


def setting_names() -> frozenset[str]:
    """The settings a profile may set: every one but ``home`` and ``replica``, which belong to one machine."""
    return frozenset(VARIABLES) - {"home", "replica"}


def profile_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """``load_settings`` with the profile in use (``PLAIT_PROFILE``, else the config file's current one)."""
    environ = dict(os.environ) if environ is None else dict(environ)
    _, profile = active_profile(environ, setting_names())
    return load_settings(environ, profile=profile, **overrides)
