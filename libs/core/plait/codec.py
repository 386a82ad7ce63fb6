"""Encoders and decoders for everything on the wire, created once per process (msgspec, JSON)."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from plait.core.commands import Command
from plait.core.dispatch import Dispatch
from plait.core.events import Decision
from plait.core.model import TaskSpec, WorkflowSpec

encoder = msgspec.json.Encoder()
command_decoder = msgspec.json.Decoder(Command)
decision_decoder = msgspec.json.Decoder(Decision)
dispatch_decoder = msgspec.json.Decoder(Dispatch)
task_decoder = msgspec.json.Decoder(TaskSpec)
workflow_decoder = msgspec.json.Decoder(WorkflowSpec)


def encode(value: Any) -> bytes:
    return encoder.encode(value)


def digest(data: bytes) -> str:
    """SHA-256 of a stored record's bytes: the link of an execution's hash chain."""
    return hashlib.sha256(data).hexdigest()
