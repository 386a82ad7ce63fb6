"""What a scheduler sends to a command's ``Plait-Reply-To`` inbox when it refuses the command."""

from __future__ import annotations

import msgspec


class Rejection(msgspec.Struct, frozen=True):
    """A refused command: its id, the subject it was sent to, and why (the command itself is a dead letter)."""

    command_id: str
    subject: str
    reason: str
    type: str = "command_rejected"
