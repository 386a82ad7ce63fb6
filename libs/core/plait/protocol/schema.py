"""The registry of the wire format: every type plait puts on the wire by its schema name, and every subject with
what travels on it. ``plait schema export`` writes JSON Schemas from it; tests/unit/test_wire_doc.py checks that
docs/wire-format.md names every subject, header and type in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plait.core.activations import ActivationRecord, FireLaunchPlan
from plait.core.cachelog import CacheEntryRecord, CacheWaiter
from plait.core.commands import Command
from plait.core.dispatch import DispatchRecord
from plait.core.events import Decision, Registration
from plait.core.notifications import ExecutionNotification
from plait.core.values import ValueRef
from plait.protocol import (
    cache,
    executions,
    executors,
    lineage,
    quarantine,
    queries,
    rebuild,
    registry,
    rejections,
    subjects,
)

WIRE_TYPES: dict[str, Any] = {
    "command": Command,
    "decision": Decision,
    "registration": Registration,
    "dispatch": DispatchRecord,
    "cache_record": CacheEntryRecord,
    "cache_waiter": CacheWaiter,
    "rejection": rejections.Rejection,
    "quarantine_entry": quarantine.QuarantineEntry,
    "replay_request": quarantine.ReplayRequest,
    "replay_reply": quarantine.ReplayReply,
    "rebuild_request": rebuild.RebuildRequest,
    "rebuild_reply": rebuild.RebuildReply,
    "query_error": queries.ErrorReply,
    "list_executions": executions.ListExecutions,
    "execution_list": executions.ExecutionList,
    "show_execution": executions.ShowExecution,
    "execution_shown": executions.ExecutionShown,
    "cache_lookup": cache.CacheLookupRequest,
    "cache_lookup_reply": cache.CacheLookupReply,
    "cache_lookup_many": cache.CacheLookupManyRequest,
    "cache_lookup_many_reply": cache.CacheLookupManyReply,
    "list_cache_entries": cache.ListCacheEntries,
    "cache_entry_list": cache.CacheEntryList,
    "show_cache_entry": cache.ShowCacheEntry,
    "cache_entry_shown": cache.CacheEntryShown,
    "lineage_request": lineage.LineageRequest,
    "lineage_graph": lineage.LineageGraph,
    "list_entities": registry.ListEntities,
    "entity_list": registry.EntityList,
    "show_entity": registry.ShowEntity,
    "entity_shown": registry.EntityShown,
    "same_value_request": lineage.SameValueRequest,
    "same_value": lineage.SameValue,
    "value_ref": ValueRef,
    "activation_record": ActivationRecord,
    "fire_command": FireLaunchPlan,
    "notification": ExecutionNotification,
    "executor_announcement": executors.ExecutorAnnouncement,
}
"""Schema name → the type of the messages it describes (a Struct, or a tagged union of them)."""

EMBEDDED_TYPES = frozenset({"value_ref"})
"""Schemas of what travels inside the values of other messages (a value stored in the values bucket, in place of
the value), on no subject of its own."""


@dataclass(frozen=True)
class Channel:
    """A subject (``<...>`` stands for one or more tokens) and what travels on it."""

    subject: str
    carries: str  # a WIRE_TYPES name
    answers: tuple[str, ...] = ()  # what the receiver replies with (to the request's inbox, or to Plait-Reply-To)
    stream: str = ""  # the JetStream stream that stores it; "" for core NATS request/reply


def _in_tenant(root: str, *rest: str) -> str:
    return ".".join((root, "<project>", "<domain>", *rest))


def _query(kind: str, request: str, reply: str) -> Channel:
    return Channel(_in_tenant(subjects.CATALOG_ROOT, kind), request, (reply, "query_error"))


CHANNELS: tuple[Channel, ...] = (
    Channel(
        _in_tenant(subjects.COMMANDS_ROOT, "<execution>", "<kind>"),
        "command",
        ("rejection",),
        subjects.COMMANDS_STREAM,
    ),
    Channel(_in_tenant(subjects.SCHEDULES_ROOT, "<execution>", "<timer>"), "command", stream=subjects.TIMERS_STREAM),
    Channel(
        subjects.fired_subject(_in_tenant(subjects.COMMANDS_ROOT, "<execution>", "<kind>")),
        "command",
        stream=subjects.TIMERS_STREAM,
    ),
    Channel(_in_tenant(subjects.EVENTS_ROOT, "<execution>"), "decision", stream=subjects.EVENTS_STREAM),
    Channel(
        _in_tenant(subjects.REGISTRY_ROOT, "<kind>", "<name>", "<version>"),
        "registration",
        stream=subjects.EVENTS_STREAM,
    ),
    Channel(_in_tenant(subjects.CACHE_ROOT, "<cache key>", "entry"), "cache_record", stream=subjects.EVENTS_STREAM),
    Channel(_in_tenant(subjects.CACHE_ROOT, "<cache key>", "waiter"), "cache_waiter", stream=subjects.EVENTS_STREAM),
    Channel(f"{subjects.DISPATCH_ROOT}.<cluster>.<queue>", "dispatch", stream=subjects.DISPATCH_STREAM),
    Channel(f"{subjects.DEAD_LETTER_ROOT}.<original subject>", "command", stream=subjects.DEAD_LETTER_STREAM),
    Channel(f"{subjects.QUARANTINE_ROOT}.<reader>.<sequence>", "quarantine_entry", stream=subjects.QUARANTINE_STREAM),
    Channel(f"{subjects.QUARANTINE_REPLAY_ROOT}.<reader>", "replay_request", ("replay_reply",)),
    Channel(subjects.CATALOG_REBUILD, "rebuild_request", ("rebuild_reply",)),
    _query(subjects.CATALOG_LIST_EXECUTIONS, "list_executions", "execution_list"),
    _query(subjects.CATALOG_SHOW_EXECUTION, "show_execution", "execution_shown"),
    _query(subjects.CATALOG_CACHE_LOOKUP, "cache_lookup", "cache_lookup_reply"),
    _query(subjects.CATALOG_CACHE_LOOKUP_MANY, "cache_lookup_many", "cache_lookup_many_reply"),
    _query(subjects.CATALOG_LIST_CACHE_ENTRIES, "list_cache_entries", "cache_entry_list"),
    _query(subjects.CATALOG_SHOW_CACHE_ENTRY, "show_cache_entry", "cache_entry_shown"),
    _query(subjects.CATALOG_LINEAGE, "lineage_request", "lineage_graph"),
    _query(subjects.CATALOG_LIST_ENTITIES, "list_entities", "entity_list"),
    _query(subjects.CATALOG_SHOW_ENTITY, "show_entity", "entity_shown"),
    _query(subjects.CATALOG_SAME_VALUE, "same_value_request", "same_value"),
    Channel(_in_tenant(subjects.ACTIVATIONS_ROOT, "<launch plan>"), "activation_record", stream=subjects.EVENTS_STREAM),
    Channel(
        _in_tenant(subjects.SCHEDULES_ROOT, "<launch plan>", subjects.LAUNCH_PLAN_TIMER),
        "fire_command",
        stream=subjects.TIMERS_STREAM,
    ),
    Channel(_in_tenant(subjects.FIRES_ROOT, "<launch plan>"), "fire_command", stream=subjects.COMMANDS_STREAM),
    Channel(
        subjects.fired_subject(_in_tenant(subjects.FIRES_ROOT, "<launch plan>")),
        "fire_command",
        stream=subjects.TIMERS_STREAM,
    ),
    Channel(_in_tenant(subjects.NOTIFY_ROOT, "<execution>"), "notification", stream=subjects.NOTIFICATIONS_STREAM),
    Channel(
        f"$KV.{executors.EXECUTORS_BUCKET}.<cluster>.<queue>.<replica>",
        "executor_announcement",
        stream=f"KV_{executors.EXECUTORS_BUCKET}",
    ),
)
"""Every subject plait uses, in the order docs/wire-format.md presents them."""
