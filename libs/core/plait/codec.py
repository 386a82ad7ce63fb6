"""Encoders and decoders for everything on the wire, created once per process (msgspec, JSON)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec

from plait.core.commands import Command
from plait.core.dispatch import Dispatch, DispatchRecord
from plait.core.events import (
    TERMINAL_EVENTS,
    AttemptFailed,
    AttemptStopped,
    Decision,
    DynamicExpanded,
    MapItemSucceeded,
    NodeSucceeded,
)
from plait.core.model import TaskSpec, WorkflowSpec
from plait.core.shared_values import restore_shared
from plait.core.upcast import UPCASTERS, Upcaster, upcast_decision
from plait.errors import InputError


class DecisionDecoder:
    """Decodes a stored ``Decision``, upcasting events written by older releases.

    The typed msgspec decoder runs first: records of the current version (all but old history) pay
    nothing for upcasting. Only a record that does not validate is decoded to plain JSON, upcast
    and decoded again; if no upcaster applies, the original validation error is raised.
    """

    def __init__(self, upcasters: Mapping[str, Upcaster] = UPCASTERS) -> None:
        self.upcasters = upcasters
        self._typed = msgspec.json.Decoder(Decision)

    def decode(self, data: bytes) -> Decision:
        try:
            decision: Decision = self._typed.decode(data)
            return restore_shared(decision)
        except msgspec.ValidationError:
            raw = msgspec.json.decode(data)
            if not isinstance(raw, dict):
                raise
            upcast, changed = upcast_decision(raw, self.upcasters)
            if not changed:
                raise
        decision = self._typed.decode(encoder.encode(upcast))
        return restore_shared(decision)


encoder = msgspec.json.Encoder()
command_decoder = msgspec.json.Decoder(Command)
msgpack_command_decoder = msgspec.msgpack.Decoder(Command)

CONTENT_TYPE = "Content-Type"  # a header: see plait.protocol.headers
MSGPACK = "application/msgpack"


class MalformedCommand(InputError):
    """A command's bytes decode to no command: bad JSON or MessagePack, a wrong field, a value JSON cannot hold."""


def decode_command(data: bytes, headers: Mapping[str, str] | None) -> Command:
    """A command in JSON, or in MessagePack when its ``Content-Type`` header is ``application/msgpack``.

    A MessagePack command is brought to the JSON form (bytes as base64 strings) before it is decided, so a
    decision made from it is the same as the one its stored events replay to. Raises ``MalformedCommand``.
    """
    try:
        if headers and headers.get(CONTENT_TYPE) == MSGPACK:
            command: Command = command_decoder.decode(encoder.encode(msgpack_command_decoder.decode(data)))
            return command
        decoded: Command = command_decoder.decode(data)
        return decoded
    except (msgspec.DecodeError, msgspec.EncodeError) as exc:
        raise MalformedCommand(f"malformed command: {exc}") from exc
    except RecursionError as exc:
        raise MalformedCommand("malformed command: nested too deeply to decode") from exc
    except TypeError as exc:  # a MessagePack extension type, which JSON cannot carry
        raise MalformedCommand(f"malformed command: {exc}") from exc


class _ErrorKind(msgspec.Struct):
    error_type: str = ""


class _EventKind(msgspec.Struct):
    type: str
    attempt_id: str = ""
    error: _ErrorKind | None = None


class _DecisionKinds(msgspec.Struct):
    events: tuple[_EventKind, ...]


_kinds_decoder = msgspec.json.Decoder(_DecisionKinds)
_TERMINAL_TAGS = frozenset(str(event.__struct_config__.tag) for event in TERMINAL_EVENTS)


_AFTER_END_TAGS = _TERMINAL_TAGS | {str(AttemptStopped.__struct_config__.tag)}  # decided only once it has ended


_AFTER_END_MARKS = tuple(f'"{tag}"'.encode() for tag in sorted(_AFTER_END_TAGS))
_SEARCHED_ABOVE_BYTES = 2048  # a smaller decision is decoded at once: that is quicker than the searches


def ends_execution(data: bytes) -> bool:
    """Whether a stored decision shows its execution ended: it holds a terminal event, or an event decided only
    after the end (an attempt stopped: the last decision of an aborted execution may be one). Only the events'
    kinds are read, not their contents; and of a large decision (a launch of thousands of nodes) only when one of
    those kinds' tags is in its bytes at all."""
    if len(data) > _SEARCHED_ABOVE_BYTES and not any(mark in data for mark in _AFTER_END_MARKS):
        return False
    return any(event.type in _AFTER_END_TAGS for event in _kinds_decoder.decode(data).events)


_ATTEMPT_FAILED_TAG = str(AttemptFailed.__struct_config__.tag)
_SUCCESS_TAGS = frozenset(
    str(kind.__struct_config__.tag) for kind in (NodeSucceeded, MapItemSucceeded, DynamicExpanded)
)
FAILED_BY_THE_SCHEDULER = frozenset({"TaskTimedOut", "AttemptDeadlinePassed", ""})
"""The error types of the failures the scheduler decides of a running attempt (its timeout or deadline passed, a
value too large), not reported by the attempt itself."""


class AttemptEndings(NamedTuple):
    failed: frozenset[str]  # attempts the scheduler failed while they ran (timed out, say)
    reported: frozenset[str]  # attempts whose own report ended them, succeeded or failed


def attempt_endings(data: bytes) -> AttemptEndings:
    """The attempts a stored decision ended, by who ended them: only the events' kinds, attempt ids and error
    types are read."""
    failed: set[str] = set()
    reported: set[str] = set()
    for event in _kinds_decoder.decode(data).events:
        if event.type == _ATTEMPT_FAILED_TAG:
            by_scheduler = event.error is None or event.error.error_type in FAILED_BY_THE_SCHEDULER
            (failed if by_scheduler else reported).add(event.attempt_id)
        elif event.type in _SUCCESS_TAGS:
            reported.add(event.attempt_id)
    return AttemptEndings(frozenset(failed), frozenset(reported))


decision_decoder = DecisionDecoder()
dispatch_decoder = msgspec.json.Decoder(Dispatch)  # one attempt's (a pod's, a test's)
dispatch_record_decoder: msgspec.json.Decoder[DispatchRecord] = msgspec.json.Decoder(DispatchRecord)  # a message's
task_decoder = msgspec.json.Decoder(TaskSpec)
workflow_decoder = msgspec.json.Decoder(WorkflowSpec)


def encode(value: Any) -> bytes:
    return encoder.encode(value)


def digest(data: bytes) -> str:
    """SHA-256 of a stored record's bytes: the link of an execution's hash chain."""
    return hashlib.sha256(data).hexdigest()
