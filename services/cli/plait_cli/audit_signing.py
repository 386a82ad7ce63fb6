"""Signed histories on the command line: ``plait keys generate|show``, ``plait audit export``, ``plait audit
verify-export``, and the signature, registry, cache log and checkpoint checks of ``plait audit verify``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from pathlib import Path

import anyio
import msgspec

from plait.adapters.checkpoints import read_checkpoints
from plait.audit import Problem
from plait.audit_signatures import (
    export_history,
    read_export,
    verify_checkpoints,
    verify_export,
    verify_lost_executions,
    verify_signatures,
)
from plait.client import AsyncClient
from plait.errors import InputError
from plait.protocol import signing, subjects
from plait.protocol.signing import SignedCheckpoint
from plait.replay import Record, record_of
from plait.settings import Settings
from plait_cli.home_keys import use_home_keys
from plait_cli.stack import nats_for_command


@dataclasses.dataclass(frozen=True)
class SignatureChecks:
    """What ``plait audit verify`` checks besides chains: signatures against ``trust``, and ``checkpoints``."""

    trust: signing.TrustStore | None
    required: bool
    checkpoints: list[SignedCheckpoint]


def _trust(path: str | None) -> signing.TrustStore | None:
    chosen = path or os.environ.get(signing.TRUST_STORE, "")
    return signing.TrustStore.load(Path(chosen)) if chosen else None


def _read_checkpoints(path: str | None) -> list[SignedCheckpoint]:
    if not path:
        return []
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"--checkpoints: cannot read {path}: {exc.strerror}") from None
    if data.lstrip().startswith(b"{") and b'"format"' in data[:200]:
        return read_export(data).checkpoints
    decoder = msgspec.json.Decoder(SignedCheckpoint)
    try:
        return [decoder.decode(line) for line in data.splitlines() if line.strip()]
    except msgspec.DecodeError as exc:
        raise InputError(f"--checkpoints: {path} holds no signed checkpoints: {exc}") from None


def checks_of(settings: Settings, args: argparse.Namespace) -> SignatureChecks:
    """The signature checks ``plait audit verify`` was asked for: signatures are required when a trust store is
    configured (or the home stack's, see ``plait_cli.home_keys``), unless --allow-unsigned."""
    use_home_keys(settings)
    trust = _trust(args.trust_store)
    checkpoints = _read_checkpoints(args.checkpoints)
    if checkpoints and trust is None:
        raise InputError("--checkpoints needs a trust store (--trust-store or PLAIT_TRUST_STORE) to check them")
    return SignatureChecks(trust=trust, required=not args.allow_unsigned, checkpoints=checkpoints)


async def check_records(client: AsyncClient, records: list[Record], checks: SignatureChecks) -> list[Problem]:
    """The records' signatures, and the checkpoints given and those of the checkpoints stream."""
    if checks.trust is None:
        return []
    execution_id = records[0].subject.rsplit(".", 1)[-1]
    published = await read_checkpoints(client.js, client.project, client.domain, execution_id)
    return verify_signatures(records, checks.trust, required=checks.required) + verify_checkpoints(
        records, [*checks.checkpoints, *published], checks.trust
    )


async def check_lost_executions(client: AsyncClient, present: list[str], checks: SignatureChecks) -> list[Problem]:
    """The executions of the client's project and domain that trusted checkpoints (given, and those of the checkpoints
    stream) count records of, and the log no longer holds."""
    if checks.trust is None:
        return []
    subject_of = functools.partial(subjects.execution_subject, client.project, client.domain)
    prefix = f"{subjects.EVENTS_ROOT}.{subjects.tenant(client.project, client.domain)}."
    published = await read_checkpoints(client.js, client.project, client.domain)
    return verify_lost_executions(map(subject_of, present), prefix, [*checks.checkpoints, *published], checks.trust)


async def _records_under(client: AsyncClient, pattern: str) -> list[list[Record]]:
    """The records of every events-stream subject matching ``pattern``, one list per subject."""
    found = []
    for subject in await client._subjects(pattern):
        found.append([record_of(raw, subject) async for raw in client._store.raw(subject)])
    return found


async def check_registry_and_cache(client: AsyncClient, checks: SignatureChecks) -> tuple[int, list[Problem]]:
    """The signatures of every registration and cache entry record of the client's project and domain: the number
    of subjects checked, and the problems (``execution_id`` names the subject)."""
    if checks.trust is None:
        return 0, []
    tenant = subjects.tenant(client.project, client.domain)
    patterns = (f"{subjects.REGISTRY_ROOT}.{tenant}.>", f"{subjects.CACHE_ROOT}.{tenant}.*.entry")
    problems: list[Problem] = []
    count = 0
    for pattern in patterns:
        for records in await _records_under(client, pattern):
            count += 1
            for problem in verify_signatures(records, checks.trust, required=checks.required):
                problems.append(msgspec.structs.replace(problem, execution_id=records[0].subject))
    return count, problems


async def _records(settings: Settings, execution_id: str) -> list[Record]:
    async with nats_for_command(settings, services=()) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            return await client.records(execution_id)


async def _checkpoints(settings: Settings) -> list[SignedCheckpoint]:
    async with nats_for_command(settings, services=()) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            return await read_checkpoints(client.js, client.project, client.domain)


def _export(settings: Settings, args: argparse.Namespace) -> int:
    use_home_keys(settings)
    trust = _trust(args.trust_store) or signing.TrustStore()
    records = anyio.run(_records, settings, args.execution_id)
    missing = sorted({r.key_id for r in records if r.key_id and r.key_id not in trust.keys})
    data = export_history(args.execution_id, records, trust, _read_checkpoints(args.checkpoints))
    Path(args.output).write_bytes(data)
    print(f"{len(records)} records of {args.execution_id} written to {args.output}", file=sys.stderr)
    if missing:
        print(f"warning: keys {', '.join(missing)} are not in the trust store: the export lacks them", file=sys.stderr)
    return 0


def _verify_export(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        export = read_export(data)
    except ValueError as exc:
        raise InputError(f"{args.file}: {exc}") from None
    trust = _trust(args.trust_store)
    if trust is None:
        trust = signing.TrustStore.from_hex(export.public_keys)
        print("warning: no trust store given: checking against the keys inside the export", file=sys.stderr)
    problems = verify_export(export, trust, required=not args.allow_unsigned)
    for problem in problems:
        print(problem)
    print(
        f"{export.execution_id}: {len(export.records)} records, {len(problems)} problems "
        "(chain, signatures and checkpoints checked offline)",
        file=sys.stderr,
    )
    return 1 if problems else 0


def _keys(args: argparse.Namespace) -> int:
    if args.action == "generate":
        path = Path(args.file)
        if path.exists():
            raise InputError(f"{path} exists already: a signing key is never overwritten")
        signer = signing.Signer.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(signer.private_pem())
        line = signing.TrustStore([signer.public]).lines()[0]
        if args.trust_store:
            with open(args.trust_store, "a") as store:
                store.write(line + "\n")
        print(line)
        return 0
    signer = signing.load_signer(Path(args.file))
    print(signing.TrustStore([signer.public]).lines()[0])
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """``plait keys ...``, ``plait audit export`` and ``plait audit verify-export``."""
    if args.command == "keys":
        return _keys(args)
    if args.action == "export":
        return _export(settings, args)
    if args.action == "checkpoints":
        found = anyio.run(_checkpoints, settings)
        Path(args.output).write_bytes(b"".join(msgspec.json.encode(one) + b"\n" for one in found))
        print(f"{len(found)} checkpoints written to {args.output}", file=sys.stderr)
        return 0
    return _verify_export(args)
