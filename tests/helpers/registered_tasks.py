"""Registering the task of a dispatch a test publishes by hand: the executor runs only registered code."""

from __future__ import annotations

from nats.js import JetStreamContext

from plait.adapters.registry import Registry
from plait.core.dispatch import Dispatch
from plait.core.events import TaskRegistered


async def register_task(js: JetStreamContext, dispatch: Dispatch) -> None:
    """Register the dispatch's task under its project and domain (idempotent)."""
    await Registry(js).register(TaskRegistered(dispatch.project, dispatch.domain, dispatch.task))
