"""Notifications of ended executions: which phases a workflow or launch plan asks for, where they go, and the
message plait publishes (and posts to a webhook) when such an execution ends."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, get_args

import msgspec

from plait.errors import DefinitionError

Phase = Literal["succeeded", "failed", "aborted"]
PHASES: tuple[str, ...] = get_args(Phase)


class Notify(msgspec.Struct, frozen=True, kw_only=True):
    """Notify when an execution ends in one of the phases ``on``: a message on ``plait.notify.<project>.<domain>.
    <execution>`` always, and, with ``webhook``, a JSON POST to that URL (retried a few times)."""

    on: tuple[Phase, ...]
    webhook: str = ""

    def __post_init__(self) -> None:
        on: Sequence[str] = self.on
        if not on or any(phase not in PHASES for phase in on):
            raise DefinitionError(f"notify on {list(on)}: phases must be among {', '.join(PHASES)}")
        if self.webhook and not self.webhook.startswith(("http://", "https://")):
            raise DefinitionError(f"notify webhook '{self.webhook}' must be an http:// or https:// URL")
        msgspec.structs.force_setattr(self, "on", tuple(on))  # given as a list, kept as the field's tuple


class ExecutionNotification(msgspec.Struct, frozen=True, kw_only=True, tag="execution_notification.v1"):
    """An execution ended in a phase its workflow or launch plan asked to be notified of."""

    project: str
    domain: str
    execution_id: str
    workflow: str
    phase: Phase
    at: datetime
    launch_plan: str = ""  # "name@version" when launched through one
    error: str = ""  # the failure's message, or the abort's reason
