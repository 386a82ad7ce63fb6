"""Signatures and checkpoints: who wrote each record, and whether a history was cut short.

``verify_signatures`` checks each record of a subject against a trust store (``plait.protocol.signing``): a record
with no signature (when signatures are required), one signed by a key the store does not hold, or one whose
signature does not match its bytes and subject is reported at its position. With ``verify_chain`` this detects
forged, altered, reordered and removed records; a tail cut off is seen only against a checkpoint: a signed
statement that an execution's subject held ``count`` records, the last at ``sequence`` with digest ``digest``.

An export (``export_history``) is one JSON document holding an execution's records with their headers, the
public keys that signed them and any checkpoints: ``verify_export`` checks it with no server.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence

import msgspec

from plait import codec
from plait.audit import Problem, ProblemKind, verify_chain
from plait.protocol import signing
from plait.protocol.signing import Checkpoint, SignedCheckpoint, checkpoint_subject
from plait.replay import Record

EXPORT_FORMAT = "plait-audit-export/1"


def checkpoint_of(records: Sequence[Record]) -> Checkpoint:
    """The head of a subject's records, derived from them alone."""
    last = records[-1]
    return Checkpoint(
        execution_id=last.subject.rsplit(".", 1)[-1],
        subject=last.subject,
        count=len(records),
        sequence=last.sequence,
        digest=codec.digest(last.data),
    )


def _problem(kind: ProblemKind, message: str, records: Sequence[Record], index: int) -> Problem:
    record = records[index]
    return Problem(
        kind=kind,
        message=message,
        execution_id=record.subject.rsplit(".", 1)[-1],
        sequence=record.sequence,
        index=index,
    )


def verify_signatures(records: Sequence[Record], trust: signing.TrustStore, *, required: bool = True) -> list[Problem]:
    """The records whose signature is missing (when ``required``), by an unknown key, or wrong."""
    problems = []
    for index, record in enumerate(records):
        headers = {signing.PLAIT_SIG: record.signature, signing.PLAIT_KEY: record.key_id}
        why = trust.check(record.subject, record.data, headers)
        if why is None:
            continue
        kind, _, message = why.partition(": ")
        if kind == "unsigned" and not required:
            continue
        problems.append(_problem(kind, message, records, index))  # type: ignore[arg-type]
    return problems


def verify_checkpoints(
    records: Sequence[Record], checkpoints: Iterable[SignedCheckpoint], trust: signing.TrustStore
) -> list[Problem]:
    """Each trusted checkpoint of these records' subject must be met: the record it counts is there, with its
    sequence and digest. A checkpoint past the last record shows a cut-off tail (``truncated``); one that
    disagrees with the record at its position shows a history rewritten after it was signed."""
    if not records:
        return []
    subject = records[0].subject
    problems = []
    for signed in checkpoints:
        point = signed.checkpoint
        if point.subject != subject:
            continue
        headers = {signing.PLAIT_SIG: signed.signature, signing.PLAIT_KEY: signed.key_id}
        why = trust.check(checkpoint_subject(subject), codec.encode(point), headers)
        if why is not None:
            kind, _, message = why.partition(": ")
            problems.append(
                Problem(
                    kind=kind,  # type: ignore[arg-type]
                    message=f"checkpoint at record {point.count - 1}: {message}",
                    execution_id=point.execution_id,
                    sequence=point.sequence,
                    index=point.count - 1,
                )
            )
            continue
        index = point.count - 1
        if index >= len(records):
            problems.append(
                Problem(
                    kind="truncated",
                    message=f"a signed checkpoint counts {point.count} records (the last at sequence "
                    f"{point.sequence}); the log holds {len(records)}: its tail was cut off or rolled back",
                    execution_id=point.execution_id,
                    sequence=point.sequence,
                    index=index,
                )
            )
        elif codec.digest(records[index].data) != point.digest or records[index].sequence != point.sequence:
            problems.append(
                _problem(
                    "truncated",
                    f"differs from the record a signed checkpoint names here (sequence {point.sequence}, digest "
                    f"{point.digest[:12]}): the history was rolled back and rewritten",
                    records,
                    index,
                )
            )
    return problems


def verify_lost_executions(
    present: Iterable[str], tenant_prefix: str, checkpoints: Iterable[SignedCheckpoint], trust: signing.TrustStore
) -> list[Problem]:
    """One ``truncated`` problem for each execution subject under ``tenant_prefix`` that a trusted checkpoint counts
    records of and that is not among the ``present`` subjects of the log: removed whole (with its checkpoints, when
    only a copy kept elsewhere still has them)."""
    kept = set(present)
    lost: dict[str, Checkpoint] = {}
    for signed in checkpoints:
        point = signed.checkpoint
        if point.subject in kept or not point.subject.startswith(tenant_prefix):
            continue
        headers = {signing.PLAIT_SIG: signed.signature, signing.PLAIT_KEY: signed.key_id}
        if trust.check(checkpoint_subject(point.subject), codec.encode(point), headers) is not None:
            continue  # not trusted: says nothing of what the log should hold
        if point.subject not in lost or point.count > lost[point.subject].count:
            lost[point.subject] = point
    return [
        Problem(
            kind="truncated",
            message=f"a signed checkpoint counts {point.count} records (the last at sequence {point.sequence}); "
            "the log holds none: the execution was removed",
            execution_id=point.execution_id,
            sequence=point.sequence,
            index=point.count - 1,
        )
        for point in lost.values()
    ]


class ExportedRecord(msgspec.Struct, frozen=True, kw_only=True):
    sequence: int
    subject: str
    data: str  # base64 of the stored bytes
    msg_id: str = ""
    signature: str = ""
    key_id: str = ""


class Export(msgspec.Struct, frozen=True, kw_only=True):
    format: str
    execution_id: str
    public_keys: list[str]  # hex, as in a trust store
    records: list[ExportedRecord]
    checkpoints: list[SignedCheckpoint] = []


def export_history(
    execution_id: str,
    records: Sequence[Record],
    trust: signing.TrustStore,
    checkpoints: Sequence[SignedCheckpoint] = (),
) -> bytes:
    """An execution's history as one JSON document, with the public keys (of ``trust``) that signed it."""
    used = {record.key_id for record in records} | {signed.key_id for signed in checkpoints}
    keys = signing.TrustStore([key for kid, key in trust.keys.items() if kid in used])
    export = Export(
        format=EXPORT_FORMAT,
        execution_id=execution_id,
        public_keys=[line.split()[0] for line in keys.lines()],
        records=[
            ExportedRecord(
                sequence=r.sequence,
                subject=r.subject,
                data=base64.b64encode(r.data).decode(),
                msg_id=r.msg_id,
                signature=r.signature,
                key_id=r.key_id,
            )
            for r in records
        ],
        checkpoints=list(checkpoints),
    )
    return msgspec.json.format(codec.encode(export), indent=1)


class BadExport(ValueError):
    """A file that is no plait audit export."""


def read_export(data: bytes) -> Export:
    try:
        export = msgspec.json.decode(data, type=Export)
    except msgspec.DecodeError as exc:
        raise BadExport(f"not a plait audit export: {exc}") from None
    if export.format != EXPORT_FORMAT:
        raise BadExport(f"not a plait audit export: format '{export.format}', expected '{EXPORT_FORMAT}'")
    return export


def records_of(export: Export) -> list[Record]:
    return [
        Record(
            sequence=r.sequence,
            subject=r.subject,
            data=base64.b64decode(r.data),
            msg_id=r.msg_id,
            signature=r.signature,
            key_id=r.key_id,
        )
        for r in export.records
    ]


def verify_export(export: Export, trust: signing.TrustStore, *, required: bool = True) -> list[Problem]:
    """An exported history's chain, signatures and checkpoints, checked with ``trust`` alone."""
    records = records_of(export)
    if not records:
        return [Problem(kind="not_launched", message="the export holds no record", execution_id=export.execution_id)]
    named = export.execution_id.replace(".", ":")  # as the subject's token
    elsewhere = sorted({r.subject for r in records if r.subject.rsplit(".", 1)[-1] != named})
    if elsewhere:
        return [
            Problem(
                kind="wrong_execution",
                message=f"the export is of execution {export.execution_id}, its records of {', '.join(elsewhere[:3])}",
                execution_id=export.execution_id,
            )
        ]
    return (
        verify_chain(records)
        + verify_signatures(records, trust, required=required)
        + verify_checkpoints(records, export.checkpoints, trust)
    )
