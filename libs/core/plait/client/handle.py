"""``AsyncExecutionHandle``: one execution, launched or looked up: wait for it, follow it, abort it, take its result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from plait.adapters.event_log import StoredDecision
from plait.client.outcome import ExecutionOutcome, result_of
from plait.core.values import contains_refs
from plait.sdk.dataframes import forget_downloaded
from plait.sdk.workflow import Workflow

if TYPE_CHECKING:
    from plait.client.following import Following

R = TypeVar("R")


class AsyncExecutionHandle(Generic[R]):
    """An execution of this client's project and domain; ``result()`` decodes its outputs to ``R``, what its
    workflow returns (its outputs by name when the handle was made without the workflow)."""

    def __init__(self, client: Following, execution_id: str, workflow: Workflow[Any, R] | None = None) -> None:
        self._client, self._workflow = client, workflow
        self.id = execution_id

    async def wait(self, timeout: float | None = None) -> ExecutionOutcome:
        """How the execution ended, once it has; ``Timeout`` if it has not within ``timeout`` seconds."""
        return await self._client.wait(self.id, timeout)

    async def result(self, timeout: float | None = None) -> R:
        """The workflow's return value, once the execution has succeeded; ``ExecutionError`` if it failed or was
        aborted, ``Timeout`` if it has not ended within ``timeout`` seconds. Outputs stored by reference are
        downloaded (a ``File`` or ``Directory`` to a new temporary directory of its own)."""
        outcome = await self.wait(timeout)
        if outcome.outputs is None or not contains_refs(outcome.outputs):
            result: R = result_of(outcome, self._workflow)
            return result
        outcome = msgspec.structs.replace(outcome, outputs=await self._client._load_values(outcome.outputs))
        try:
            result = result_of(outcome, self._workflow)
        finally:
            forget_downloaded(outcome.outputs)  # dataframes were read whole: their files are no longer needed
        return result

    def events(self, *, until_terminal: bool = True) -> AsyncIterator[StoredDecision]:
        """The execution's decisions from the start, then as they are appended; ends after the last one."""
        return self._client.events(self.id, until_terminal=until_terminal)

    async def abort(self, reason: str = "aborted by request", *, aborted_by: str = "") -> None:
        """Ask the scheduler to abort the execution: its running attempts are cancelled, nothing new starts."""
        await self._client.abort(self.id, reason, aborted_by=aborted_by)

    def __repr__(self) -> str:
        return f"<AsyncExecutionHandle {self.id}>"
