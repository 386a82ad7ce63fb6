"""Every metric a plait service exports, in one per-process registry.

Names and labels follow Prometheus conventions (``_total`` counters, ``_seconds`` and ``_bytes`` units); no label
takes a value per execution, node or attempt, so the number of series stays bounded by tasks, queues and consumers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)

BUILD_INFO = Gauge(
    "plait_build_info",
    "1 for each running service process, labelled with its version",
    ["service", "version", "replica"],
    registry=REGISTRY,
)

# scheduler
COMMANDS = Counter(
    "plait_commands_total", "Commands taken from the command stream, by kind", ["kind"], registry=REGISTRY
)
DECISIONS = Counter("plait_decisions_total", "Decisions appended to the event log", registry=REGISTRY)
CONFLICTS = Counter(
    "plait_decision_conflicts_total",
    "Appends refused by optimistic concurrency (another replica decided first)",
    registry=REGISTRY,
)
PARTITIONS_HELD = Gauge(
    "plait_scheduler_partitions_held",
    "Command partitions this scheduler replica is pinned to (0 when the commands stream is not partitioned)",
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "plait_cache_lookups_total", "Task cache look-ups decided, by outcome (hit or miss)", ["outcome"], registry=REGISTRY
)
STATE_CACHE_BYTES = Gauge(
    "plait_state_cache_bytes", "Estimated memory held by the scheduler's cache of execution states", registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "plait_dead_letters_total",
    "Messages dead-lettered: commands rejected, dispatch records unreadable",
    registry=REGISTRY,
)

# every service that reads a stream
QUARANTINED = Counter(
    "plait_quarantined_messages_total", "Malformed messages kept aside, by reader", ["reader"], registry=REGISTRY
)

# executor
READY_TO_START = Histogram(
    "plait_attempt_start_delay_seconds",
    "From the dispatch record's storing (the node became ready) to the attempt's start",
    ["cluster", "queue"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ATTEMPT_DURATION = Histogram(
    "plait_attempt_duration_seconds",
    "Attempts' run time, by task and outcome (succeeded, failed_user, failed_system)",
    ["task", "outcome"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
WORKERS_REPLACED = Counter(
    "plait_workers_replaced_total",
    "Local worker processes replaced after an attempt, worn out: by reason (memory, threads, attempts)",
    ["reason"],
    registry=REGISTRY,
)

# queues (JetStream consumers and the dispatch work queue), polled by the scheduler
CONSUMER_PENDING = Gauge(
    "plait_consumer_pending_messages",
    "Messages not yet delivered to a durable consumer",
    ["stream", "consumer"],
    registry=REGISTRY,
)
CONSUMER_ACK_PENDING = Gauge(
    "plait_consumer_ack_pending_messages",
    "Messages delivered to a durable consumer and not yet acknowledged",
    ["stream", "consumer"],
    registry=REGISTRY,
)
CONSUMER_OLDEST_AGE = Gauge(
    "plait_consumer_oldest_age_seconds",
    "Age of the oldest message a durable consumer has not acknowledged (0: none)",
    ["stream", "consumer"],
    registry=REGISTRY,
)
DISPATCH_DEPTH = Gauge(
    "plait_dispatch_queue_messages",
    "Dispatch records stored for a cluster's queue: waiting for an executor or being run (with or without a consumer)",
    ["cluster", "queue"],
    registry=REGISTRY,
)
DISPATCH_OLDEST_AGE = Gauge(
    "plait_dispatch_queue_oldest_age_seconds",
    "Age of the oldest dispatch record of a cluster's queue (0: none)",
    ["cluster", "queue"],
    registry=REGISTRY,
)
TIMERS = Gauge("plait_timers_scheduled", "Timers (message schedules) waiting in the timers stream", registry=REGISTRY)
DEAD_LETTERS_STORED = Gauge("plait_dead_letters_stored", "Messages kept on the dead-letter stream", registry=REGISTRY)
QUARANTINE_STORED = Gauge(
    "plait_quarantine_entries_stored", "Entries on the quarantine stream (kept or resolved)", registry=REGISTRY
)

# catalog
PROJECTION_LAG_EVENTS = Gauge(
    "plait_projection_lag_messages",
    "Event-log messages the catalog's projection has not applied yet",
    registry=REGISTRY,
)
PROJECTION_LAG_SECONDS = Gauge(
    "plait_projection_lag_seconds",
    "Age of the oldest event-log message not projected yet (0: caught up)",
    registry=REGISTRY,
)
PROJECTED = Counter("plait_projected_messages_total", "Event-log messages projected into PostgreSQL", registry=REGISTRY)

# health
READY = Gauge("plait_ready", "1 when the service's readiness checks pass", registry=REGISTRY)
DEGRADED = Gauge(
    "plait_degraded",
    "1 while a condition an operator must mend holds; the service still serves (its /readyz body says what to do)",
    ["condition"],
    registry=REGISTRY,
)
