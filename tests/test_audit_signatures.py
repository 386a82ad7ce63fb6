"""Signed histories: forged, altered, reordered, removed and truncated histories are each detected at their position,
registrations and cache records are checked too, and an export verifies with no server."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from plait import codec
from plait.adapters.checkpoints import read_checkpoints
from plait.adapters.streams import ensure_streams
from plait.audit import Problem, verify_chain
from plait.audit_signatures import checkpoint_of, verify_checkpoints, verify_signatures
from plait.client import AsyncClient
from plait.core.dispatch import DispatchChunk, record_of
from plait.core.events import Decision, Event, NodeQueued, NodeSucceeded
from plait.protocol import signing, subjects
from plait.protocol.headers import PLAIT_ERROR
from plait.protocol.signing import SignedCheckpoint, sign_checkpoint
from plait.replay import Record
from plait_cli.audit_signing import SignatureChecks, check_registry_and_cache
from plait_executor import dispatch_trust
from tests import workflows
from tests.audit_workflows import make_history
from tests.helpers.embedded_processes import plait
from tests.helpers.plait_command import plait_command, plait_command_async
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state


@dataclasses.dataclass
class Signed:
    client: AsyncClient
    ids: dict[str, str]
    env: dict[str, str]
    signer: signing.Signer
    trust: signing.TrustStore
    trust_file: Path


@pytest.fixture
async def signed(
    nats_url: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Signed]:
    """A history made by services (and a client) that sign with one key, and a trust store holding it."""
    key_file, trust_file = tmp_path / "signing.pem", tmp_path / "trust"
    done = plait_command(["keys", "generate", str(key_file), "--trust-store", str(trust_file)], {})
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv(signing.SIGNING_KEY_FILE, str(key_file))
    monkeypatch.setenv(signing.TRUST_STORE, str(trust_file))  # the executor runs only what a trusted key signed
    signing.process_signer.cache_clear()
    dispatch_trust.trust_store.cache_clear()
    domain = f"signed-{uuid.uuid4().hex[:12]}"
    try:
        async with services_and_client(nats_url, database_url):
            async with await AsyncClient.connect(nats_url, domain=domain) as client:
                env = {"PLAIT_NATS_URL": nats_url, "PLAIT_DOMAIN": domain}
                ids = await make_history(client, tmp_path)
                signer = signing.load_signer(key_file)
                trust = signing.TrustStore.load(trust_file)
                yield Signed(client, ids, env, signer, trust, trust_file)
    finally:
        signing.process_signer.cache_clear()
        dispatch_trust.trust_store.cache_clear()


def forged(records: list[Record], previous: str) -> Record:
    """A decision nobody decided, put after ``records`` with the given ``previous``."""
    last = codec.decision_decoder.decode(records[-1].data)
    decision = Decision(
        execution_id=last.execution_id,
        at=datetime.now(UTC),
        replica="mallory",
        commands=("forged",),
        previous=previous,
        events=(NodeSucceeded(node="double", attempt_id="forged", outputs={"result": 666}),),
    )
    data = codec.encode(decision)
    return Record(sequence=records[-1].sequence + 1, subject=records[-1].subject, data=data, msg_id=codec.digest(data))


def where(problems: list[Problem]) -> set[tuple[str, int | None]]:
    return {(problem.kind, problem.index) for problem in problems}


def signed_by(signer: signing.Signer, record: Record) -> Record:
    headers = signer.headers(record.subject, record.data)
    return msgspec.structs.replace(record, signature=headers[signing.PLAIT_SIG], key_id=headers[signing.PLAIT_KEY])


def audit(records: list[Record], trust: signing.TrustStore) -> set[tuple[str, int | None]]:
    return where(verify_chain(records) + verify_signatures(records, trust))


async def test_a_signed_history_verifies_clean_with_its_trust_store(signed: Signed) -> None:
    for name, execution_id in signed.ids.items():
        records = await signed.client.records(execution_id)
        assert {r.key_id for r in records} == {signed.signer.key_id}, name
        assert verify_signatures(records, signed.trust) == [], name
    done = await plait_command_async(["audit", "verify", "--all", "--trust-store", str(signed.trust_file)], signed.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 executions, 0 problems" in done.stderr and "signatures (also of" in done.stderr
    stranger = signing.TrustStore([signing.Signer.generate().public])
    records = await signed.client.records(signed.ids["succeeded"])
    assert where(verify_signatures(records, stranger)) == {("unknown_key", i) for i in range(len(records))}


async def test_forged_altered_reordered_removed_and_truncated_histories_are_each_detected(signed: Signed) -> None:
    records = await signed.client.records(signed.ids["failed"])
    n, trust = len(records), signed.trust
    assert n >= 3

    # forged: a decision that chains correctly, signed by a key the auditors do not trust
    mallory = signing.Signer.generate()
    fake = signed_by(mallory, forged(records, codec.digest(records[-1].data)))
    assert audit([*records, fake], trust) == {("unknown_key", n)}
    # ... or carrying a trusted key's id with a signature of other bytes
    stolen_id = msgspec.structs.replace(fake, key_id=signed.signer.key_id)
    assert audit([*records, stolen_id], trust) == {("bad_signature", n)}
    # ... or unsigned: refused when signatures are required, accepted when not
    unsigned = msgspec.structs.replace(fake, signature="", key_id="")
    assert audit([*records, unsigned], trust) == {("unsigned", n)}
    assert verify_signatures([*records, unsigned], trust, required=False) == []

    # altered: the bytes of record 1 changed, its signature kept
    altered_data = records[1].data.replace(b'"replica":"', b'"replica":"x', 1)
    altered = [records[0], msgspec.structs.replace(records[1], data=altered_data), *records[2:]]
    assert audit(altered, trust) == {("altered", 1), ("bad_signature", 1), ("chain_broken", 2)}
    # ... and re-chained with a new Nats-Msg-Id: the signature still gives it away
    rechained = [records[0], msgspec.structs.replace(altered[1], msg_id=codec.digest(altered_data)), *records[2:]]
    assert ("bad_signature", 1) in audit(rechained, trust)

    # a signed record moved to another execution's subject
    other = await signed.client.records(signed.ids["succeeded"])
    moved = msgspec.structs.replace(records[1], subject=other[0].subject, sequence=other[-1].sequence + 1)
    assert ("bad_signature", len(other)) in audit([*other, moved], trust)

    # reordered: each record keeps its valid signature, the chain shows the swap
    swapped = [records[0], records[2], records[1], *records[3:]]
    assert {("chain_broken", 1), ("chain_broken", 2), ("out_of_order", 2)} <= audit(swapped, trust)

    # removed: a record in the middle
    assert audit([records[0], *records[2:]], trust) == {("chain_broken", 1)}

    # truncated: the tail cut off is invisible to the chain, seen against a signed checkpoint
    checkpoint = sign_checkpoint(signed.signer, checkpoint_of(records))
    assert audit(records[:-1], trust) == set()
    assert verify_checkpoints(records, [checkpoint], trust) == []
    [cut] = verify_checkpoints(records[:-1], [checkpoint], trust)
    assert (cut.kind, cut.index, cut.sequence) == ("truncated", n - 1, records[-1].sequence)
    # rolled back and rewritten: the record the checkpoint names has other bytes
    rewritten = [*records[:-1], signed_by(signed.signer, forged(records[:-1], codec.digest(records[-2].data)))]
    rewritten[-1] = msgspec.structs.replace(rewritten[-1], sequence=records[-1].sequence)
    assert where(verify_checkpoints(rewritten, [checkpoint], trust)) == {("truncated", n - 1)}
    # a checkpoint forged by an untrusted key is itself reported
    fake_point = sign_checkpoint(mallory, checkpoint_of(records))
    assert where(verify_checkpoints(records, [fake_point], trust)) == {("unknown_key", n - 1)}


async def test_the_cache_log_and_the_registry_are_verified(signed: Signed) -> None:
    client, checks = signed.client, SignatureChecks(trust=signed.trust, required=True, checkpoints=[])
    count, problems = await check_registry_and_cache(client, checks)
    assert count >= 3 and problems == [], "the workflows and tasks registered for the history, all signed"

    poison_subject = subjects.cache_entry_subject(client.project, client.domain, "poisoned")
    await client.js.publish(poison_subject, b'{"forged":true}', stream=subjects.EVENTS_STREAM)
    registration_subject = subjects.registration_subject(client.project, client.domain, "task", "evil", "v1")
    mallory = signing.Signer.generate()
    data = b'{"forged":"registration"}'
    await client.js.publish(
        registration_subject, data, headers=mallory.headers(registration_subject, data), stream=subjects.EVENTS_STREAM
    )
    _, problems = await check_registry_and_cache(client, checks)
    assert {(p.kind, p.execution_id, p.index) for p in problems} == {
        ("unsigned", poison_subject, 0),
        ("unknown_key", registration_subject, 0),
    }
    done = await plait_command_async(
        ["audit", "verify", "--all", "--no-catalog", "--trust-store", str(signed.trust_file)], signed.env
    )
    assert done.returncode == 1
    assert f"{poison_subject} record 0" in done.stdout and "unsigned" in done.stdout
    assert f"{registration_subject} record 0" in done.stdout and "unknown_key" in done.stdout


async def test_an_export_verifies_offline_and_its_damage_is_located(signed: Signed, tmp_path: Path) -> None:
    execution_id = signed.ids["failed"]
    records = await signed.client.records(execution_id)
    points = tmp_path / "checkpoints.jsonl"
    points.write_bytes(codec.encode(sign_checkpoint(signed.signer, checkpoint_of(records))) + b"\n")
    export = tmp_path / "history.json"
    args = ["audit", "export", execution_id, "-o", str(export), "--trust-store", str(signed.trust_file)]
    done = await plait_command_async([*args, "--checkpoints", str(points)], signed.env)
    assert done.returncode == 0, done.stderr

    offline = {"PLAIT_NATS_URL": "nats://127.0.0.1:1", "PLAIT_TRUST_STORE": str(signed.trust_file)}
    done = plait_command(["audit", "verify-export", str(export)], offline)  # no server is reachable there
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{execution_id}: {len(records)} records, 0 problems" in done.stderr

    document = json.loads(export.read_text())
    assert document["public_keys"] == [signed.trust.lines()[0].split()[0]]
    last = document["records"].pop()  # the tail cut off
    export.write_text(json.dumps(document))
    done = plait_command(["audit", "verify-export", str(export)], offline)
    assert done.returncode == 1
    assert f"record {len(records) - 1} (sequence {last['sequence']}): truncated" in done.stdout

    done = plait_command(["audit", "verify-export", str(export), "--trust-store", str(tmp_path / "none")], offline)
    assert done.returncode != 0 and "cannot read" in done.stderr

    document["execution_id"] = signed.ids["succeeded"]  # a signed history relabelled as another execution's
    export.write_text(json.dumps(document))
    done = plait_command(["audit", "verify-export", str(export)], offline)
    assert done.returncode == 1
    assert "wrong_execution" in done.stdout and "its records of plait.ev." in done.stdout


async def test_the_scheduler_publishes_signed_checkpoints_that_reveal_a_cut_off_tail(
    signed: Signed, tmp_path: Path
) -> None:
    client, execution_id = signed.client, signed.ids["succeeded"]
    records = await client.records(execution_id)
    published = await read_checkpoints(client.js, client.project, client.domain, execution_id)
    assert published, "one at the decision that ended the execution"
    assert published[-1].key_id == signed.signer.key_id
    assert verify_checkpoints(records, published, signed.trust) == []
    ended_at = published[-1].checkpoint.count
    assert ended_at == len(records), "the last decision of a succeeded execution is the one that ended it"

    copy = tmp_path / "checkpoints.jsonl"
    done = await plait_command_async(["audit", "checkpoints", "-o", str(copy)], signed.env)
    assert done.returncode == 0, done.stderr
    assert len(copy.read_text().splitlines()) >= len(signed.ids), "one at least for each ended execution"
    kept = [msgspec.json.decode(line, type=SignedCheckpoint) for line in copy.read_bytes().splitlines()]
    [cut] = verify_checkpoints(records[:-1], kept, signed.trust)
    assert (cut.kind, cut.index, cut.execution_id) == ("truncated", len(records) - 1, execution_id)

    done = await plait_command_async(
        ["audit", "verify", execution_id, "--trust-store", str(signed.trust_file), "--checkpoints", str(copy)],
        signed.env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checkpoints" in done.stderr


async def test_the_executor_refuses_a_dispatch_no_trusted_key_signed(signed: Signed) -> None:
    """The history's dispatches were signed by the scheduler and run; one signed by another key is set aside."""
    client = signed.client
    dead_letters = await client.nc.subscribe(f"{subjects.DEAD_LETTER_ROOT}.>")
    subject, data = subjects.dispatch_subject("local", "default"), b'{"type": "dispatch.v1", "forged": true}'
    mallory = signing.Signer.generate()
    await client.js.publish(subject, data, headers=mallory.headers(subject, data), stream=subjects.DISPATCH_STREAM)
    await client.js.publish(subject, data, stream=subjects.DISPATCH_STREAM)  # unsigned
    reasons = set()
    for _ in range(2):
        dead = await dead_letters.next_msg(timeout=30)
        assert dead.data == data and dead.headers is not None
        reasons.add(dead.headers[PLAIT_ERROR].split(":")[1].strip())
    assert reasons == {"unknown_key", "unsigned"}


async def test_a_dispatch_chunk_runs_on_one_signature_over_all_its_attempts_and_is_refused_once_altered(
    signed: Signed,
) -> None:
    """A fan-out's attempts travel in one chunk the scheduler signed once; the executor runs them all. The same chunk
    with one attempt's inputs changed after signing no longer verifies, and is set aside whole."""
    client = signed.client
    state = await final_state(client, (await client.launch(workflows.sum_of_squares, {"n": 5})).id, timeout=60)
    assert state.status == "succeeded" and state.outputs == {"total": 30, "count": 4}

    dead_letters = await client.nc.subscribe(f"{subjects.DEAD_LETTER_ROOT}.>")
    queued = [e for e in state_launch_events(await client.records(state.execution_id)) if isinstance(e, NodeQueued)]
    chunk = record_of(state, queued, 1)
    assert isinstance(chunk, DispatchChunk) and len(chunk.attempts) == 4
    subject, data = subjects.dispatch_subject("local", "default"), codec.encode(chunk)
    headers = signed.signer.headers(subject, data)
    altered = codec.encode(
        msgspec.structs.replace(
            chunk, attempts=[*chunk.attempts[:3], msgspec.structs.replace(chunk.attempts[3], inputs={"x": 666})]
        )
    )
    await client.js.publish(subject, altered, headers=headers, stream=subjects.DISPATCH_STREAM)
    dead = await dead_letters.next_msg(timeout=30)
    assert dead.data == altered and dead.headers is not None
    assert dead.headers[PLAIT_ERROR].split(":")[1].strip() == "bad_signature"


def state_launch_events(records: list[Record]) -> list[Event]:
    """The events of an execution's first decision (its launch)."""
    return list(codec.decision_decoder.decode(records[0].data).events)


def test_the_embedded_stack_signs_by_default(tmp_path: Path) -> None:
    """With no key configured, `plait run` on the home stack signs with a key it makes under PLAIT_HOME, and
    `plait audit verify` requires and checks those signatures."""
    home, unset = tmp_path / "home", {signing.SIGNING_KEY_FILE: "", signing.TRUST_STORE: ""}
    run = plait(["run", "examples/hello.py:greet"], home, unset)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    key_file, trust_file = home / "keys" / "signing.pem", home / "keys" / "trust"
    assert signing.load_signer(key_file).key_id in trust_file.read_text()
    audit = plait(["audit", "verify", "--all", "--no-catalog"], home, unset)
    out, err = audit.communicate(timeout=120)
    assert audit.returncode == 0, out + err
    assert "1 executions, 0 problems" in err and "signatures (also of 3 registry and cache subjects)" in err


async def test_all_reports_the_executions_a_kept_checkpoint_counts_and_the_log_lost(
    signed: Signed, tmp_path: Path
) -> None:
    """Deleting executions whole, their checkpoints too, is seen against a copy of the checkpoints kept elsewhere
    (docs/security.md): here the events stream is removed and made again, as an administrator can."""
    copy = tmp_path / "checkpoints.jsonl"
    done = await plait_command_async(["audit", "checkpoints", "-o", str(copy)], signed.env)
    assert done.returncode == 0, done.stderr
    kept = copy.read_text().splitlines()
    assert kept, "the copy holds the ended executions' checkpoints"
    args = ["audit", "verify", "--all", "--no-catalog", "--trust-store", str(signed.trust_file), "--checkpoints"]
    before = await plait_command_async([*args, str(copy)], signed.env)
    assert before.returncode == 0, before.stdout + before.stderr

    await signed.client.js.delete_stream(subjects.EVENTS_STREAM)
    await ensure_streams(signed.client.js)

    after = await plait_command_async([*args, str(copy)], signed.env)
    assert after.returncode == 1, after.stdout + after.stderr
    lost = {json.loads(line)["checkpoint"]["execution_id"] for line in kept}
    for execution_id in lost:
        assert f"{execution_id}" in after.stdout and "the log holds none: the execution was removed" in after.stdout
