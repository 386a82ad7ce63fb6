"""The client: register workflows, launch executions, follow them, and ask the catalog about them.

``AsyncClient`` is the implementation, one module per job (``registration``, ``launching``, ``following``,
``queries``, ``cache_admin``); ``Client`` is its blocking twin. ``launch()`` returns an execution handle; query
methods return the catalog's reply Structs from ``plait.protocol``.
"""

from plait.adapters.event_log import StoredDecision
from plait.client.async_client import AsyncClient
from plait.client.blocking import Client
from plait.client.blocking_handle import ExecutionHandle
from plait.client.cache_admin import CacheClearing
from plait.client.handle import AsyncExecutionHandle
from plait.client.launching import idempotent_execution_id
from plait.client.outcome import ExecutionOutcome
from plait.client.schedules import LaunchPlanSchedule
from plait.core.events import TaskError
from plait.protocol.cache import CacheEntryDetail, CacheEntrySummary
from plait.protocol.executions import AttemptView, ExecutionDetail, ExecutionSummary, NodeView
from plait.protocol.lineage import ArtifactNode, LineageEdge, LineageGraph, NodeExecutionNode, SameValue
from plait.protocol.registry import LATEST, EntityDetail, EntitySummary, EntityVersion
from plait.replay import Record

__all__ = [
    "LATEST",
    "ArtifactNode",
    "AsyncClient",
    "AsyncExecutionHandle",
    "AttemptView",
    "CacheClearing",
    "CacheEntryDetail",
    "CacheEntrySummary",
    "Client",
    "EntityDetail",
    "EntitySummary",
    "EntityVersion",
    "ExecutionDetail",
    "ExecutionHandle",
    "ExecutionOutcome",
    "ExecutionSummary",
    "LaunchPlanSchedule",
    "LineageEdge",
    "LineageGraph",
    "NodeExecutionNode",
    "NodeView",
    "Record",
    "SameValue",
    "StoredDecision",
    "TaskError",
    "idempotent_execution_id",
]
