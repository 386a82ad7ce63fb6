"""Stream and subject names: the JetStream layout in one place."""

from __future__ import annotations

import re

import xxhash

EVENTS_STREAM = "PLAIT_EVENTS"
COMMANDS_STREAM = "PLAIT_COMMANDS"
TIMERS_STREAM = "PLAIT_TIMERS"  # message schedules, and their fired copies until the commands stream sources them
DISPATCH_STREAM = "PLAIT_DISPATCH"
DEAD_LETTER_STREAM = "PLAIT_DEADLETTER"
QUARANTINE_STREAM = "PLAIT_QUARANTINE"
VALUES_BUCKET = "PLAIT_VALUES"  # an object store (its stream: OBJ_PLAIT_VALUES): values too large for an event
NOTIFICATIONS_STREAM = "PLAIT_NOTIFICATIONS"
LOGS_BUCKET = "PLAIT_LOGS"  # an object store (its stream: OBJ_PLAIT_LOGS): what each attempt wrote
CODE_BUCKET = "PLAIT_CODE"  # an object store: workflows' source bundles, by content hash (fast registration)
LIVE_OUTPUT_STREAM = "PLAIT_LIVE_OUTPUT"  # what running attempts write, as they write it (memory, kept an hour)

EVENTS_ROOT = "plait.ev"
REGISTRY_ROOT = "plait.reg"
COMMANDS_ROOT = "plait.cmd"
DISPATCH_ROOT = "plait.dispatch"
DEAD_LETTER_ROOT = "plait.dlq"
CATALOG_ROOT = "plait.catalog"
CACHE_ROOT = "plait.cache"
SCHEDULES_ROOT = "plait.sched"
FIRED_ROOT = "plait.fired"  # a schedule's copy, in the timers stream: sourced into the commands stream as plait.<rest>
QUARANTINE_ROOT = "plait.quarantine"
QUARANTINE_REPLAY_ROOT = "plait.quarantine_replay"  # requests to a reader: not stored in the quarantine stream
ACTIVATIONS_ROOT = "plait.lp"  # a launch plan's activation records, in the events stream
FIRES_ROOT = "plait.fire"  # a launch plan's schedule firing, in the commands stream
NOTIFY_ROOT = "plait.notify"
LIVE_OUTPUT_ROOT = "plait.out"
SCOPED_KINDS = frozenset({"started", "result"})  # the commands a task's process sends, on a subject of its scope
LAUNCH_PLAN_TIMER = "launch-plan-fire"  # the timer name of a launch plan's next fire (no execution timer has it)

# The catalog's queries (not stored: any catalog replica of the queue group answers), each on
# ``plait.catalog.<project>.<domain>.<kind>`` (``catalog_subject``) so that NATS permissions alone can confine a
# client to its project and domain; the names below are the kinds. The request and reply shapes are in
# plait.protocol.executions, .cache, .lineage and .registry.
CATALOG_QUEUE_GROUP = "plait-catalog"
CATALOG_LIST_EXECUTIONS = "executions.list"
CATALOG_SHOW_EXECUTION = "executions.show"
CATALOG_CACHE_LOOKUP = "cache.lookup"
CATALOG_CACHE_LOOKUP_MANY = "cache.lookup_many"
CATALOG_LIST_CACHE_ENTRIES = "cache.list"
CATALOG_SHOW_CACHE_ENTRY = "cache.show"
CATALOG_LINEAGE = "lineage"
CATALOG_LIST_ENTITIES = "registry.list"
CATALOG_SHOW_ENTITY = "registry.show"
CATALOG_SAME_VALUE = "lineage.same_value"
CATALOG_REBUILD = f"{CATALOG_ROOT}.rebuild"  # an operator's: every replica hears it; the projection's leader answers

_TOKEN = re.compile(r"^[A-Za-z0-9_\-:]+$")
_TENANT = re.compile(r"^[A-Za-z0-9_\-.]+$")


def token(value: str, what: str) -> str:
    """``value`` as one subject token: dots become colons; wildcards and spaces are refused."""
    converted = value.replace(".", ":")
    if not _TOKEN.match(converted):
        raise ValueError(f"{what} '{value}' may only hold letters, digits, '_', '-', ':' and '.'")
    return converted


def tenant(project: str, domain: str) -> str:
    """A project and domain as the two subject tokens that scope everything of theirs."""
    return f"{token(project, 'project')}.{token(domain, 'domain')}"


def check_tenant_name(value: str, what: str) -> str:
    """``value`` if it may name a project or domain: like any name, but without ':', which a subject token
    writes for '.' (so ``a.b`` and ``a:b`` would share subjects, and ``tenant_of_subject`` could not tell them
    apart)."""
    if not _TENANT.match(value):
        raise ValueError(f"{what} '{value}' may only hold letters, digits, '_', '-' and '.'")
    return value


def tenant_of_subject(subject: str) -> tuple[str, str]:
    """The (project, domain) of a subject ``<root>.<kind>.<project>.<domain>...``, with '.' for ':' (see
    ``check_tenant_name``)."""
    parts = subject.split(".", 4)
    if len(parts) < 4 or not parts[2] or not parts[3]:
        raise ValueError(f"subject '{subject}' names no project and domain")
    return parts[2].replace(":", "."), parts[3].replace(":", ".")


def scoped_id(project: str, domain: str, identifier: str) -> str:
    """``identifier`` made unique across projects and domains: for ``Nats-Msg-Id``, whose duplicate window spans
    a whole stream, where an execution id (and every id made from it) may recur in another project or domain."""
    return f"{project}/{domain}/{identifier}"


def execution_subject(project: str, domain: str, execution_id: str) -> str:
    return f"{EVENTS_ROOT}.{tenant(project, domain)}.{token(execution_id, 'execution id')}"


def registration_subject(project: str, domain: str, kind: str, name: str, version: str) -> str:
    return f"{REGISTRY_ROOT}.{tenant(project, domain)}.{kind}.{token(name, 'name')}.{token(version, 'version')}"


def command_subject(project: str, domain: str, execution_id: str, kind: str, scope: str = "") -> str:
    """Where a command of ``kind`` for the execution is sent. An attempt's ``started`` and ``result`` reports sent
    by a task's process carry a ``scope`` token after the kind (``attempt_scope``, ``node_scope``): its credential
    may publish there only, and the scheduler refuses a report of an attempt outside that scope."""
    subject = f"{COMMANDS_ROOT}.{tenant(project, domain)}.{token(execution_id, 'execution id')}.{kind}"
    if not scope:
        return subject
    if kind not in SCOPED_KINDS:
        raise ValueError(f"a {kind!r} command has no scope: only {sorted(SCOPED_KINDS)} do")
    return f"{subject}.{scope}"


def attempt_scope(attempt_id: str) -> str:
    """The scope of one attempt's reports (a Job of one attempt)."""
    return f"a{attempt_token(attempt_id)}"


def node_scope(node: str) -> str:
    """The scope of the reports of any attempt of one node (a map Job's items share its credential)."""
    return f"n{attempt_token(node)}"


def in_scope(scope: str, node: str, attempt_id: str) -> bool:
    """Whether a report of attempt ``attempt_id`` of ``node`` may come on a subject of ``scope`` ("": any)."""
    return not scope or scope in (attempt_scope(attempt_id), node_scope(node))


def cache_entry_subject(project: str, domain: str, key: str) -> str:
    return f"{CACHE_ROOT}.{tenant(project, domain)}.{token(key, 'cache key')}.entry"


def cache_waiter_subject(project: str, domain: str, key: str) -> str:
    return f"{CACHE_ROOT}.{tenant(project, domain)}.{token(key, 'cache key')}.waiter"


def schedule_subject(project: str, domain: str, execution_id: str, name: str) -> str:
    """Where a timer of an execution waits (one per ``name``) before it fires as a command."""
    return (
        f"{SCHEDULES_ROOT}.{tenant(project, domain)}.{token(execution_id, 'execution id')}.{token(name, 'timer name')}"
    )


def dispatch_subject(cluster: str, queue: str) -> str:
    return f"{DISPATCH_ROOT}.{token(cluster, 'cluster')}.{token(queue, 'queue')}"


def dead_letter_subject(original: str) -> str:
    return f"{DEAD_LETTER_ROOT}.{original}"


def quarantine_subject(reader: str, sequence: int) -> str:
    """Where the quarantine entry of the message at ``sequence`` that ``reader`` could not take is kept."""
    return f"{QUARANTINE_ROOT}.{token(reader, 'reader')}.{sequence}"


def quarantine_replay_subject(reader: str) -> str:
    """Where ``reader`` answers requests to take its quarantine entries again."""
    return f"{QUARANTINE_REPLAY_ROOT}.{token(reader, 'reader')}"


def _command_parts(subject: str) -> list[str] | None:
    """A command subject's tokens as sent (``plait.cmd.<project>.<domain>.<execution>.<kind>``, a report's scope
    after the kind or ""), also when a partitioned stream stored it with its partition before the kind
    (``plait.protocol.partitions``)."""
    parts = subject.split(".")
    if f"{parts[0]}.{parts[1] if len(parts) > 1 else ''}" != COMMANDS_ROOT:
        return None
    if len(parts) in (7, 8) and parts[5].isdigit():
        del parts[5]
    if len(parts) == 7 and parts[5] in SCOPED_KINDS and parts[6]:
        return parts
    return [*parts, ""] if len(parts) == 6 else None


def without_partition(subject: str) -> str:
    """A subject a partitioned commands stream stored (its partition is its sixth token) as its sender wrote it:
    where a dead letter says it was sent, and where replaying it sends it again."""
    parts = subject.split(".")
    if len(parts) < 7 or not parts[5].isdigit():
        return subject
    del parts[5]
    return ".".join(parts)


def execution_of_command_subject(subject: str) -> tuple[str, str, str] | None:
    """(project, domain, execution id) from a command subject, even when its payload is unreadable."""
    parts = _command_parts(subject)
    return (parts[2], parts[3], parts[4]) if parts else None


def scope_of_command_subject(subject: str) -> str:
    """The scope a report's subject carries after its kind ("" for none: a service's, or no command subject)."""
    parts = _command_parts(subject)
    return parts[6] if parts else ""


def kind_of_command_subject(subject: str) -> str:
    """The kind of command a command subject is for (``launch``, ``started``, ``result``...); its last token for
    any other subject."""
    parts = _command_parts(subject)
    return parts[5] if parts else subject.rsplit(".", 1)[-1]


def activation_subject(project: str, domain: str, launch_plan: str) -> str:
    """Where a launch plan's activation records are appended: the last one says whether its schedule runs."""
    return f"{ACTIVATIONS_ROOT}.{tenant(project, domain)}.{token(launch_plan, 'launch plan')}"


def fired_subject(command_subject: str) -> str:
    """Where a message schedule of the timers stream publishes its copy of a command bound for ``command_subject``
    (``plait.<rest>``): the commands stream sources it from there back to ``command_subject``."""
    return f"{FIRED_ROOT}.{command_subject.removeprefix('plait.')}"


def fire_subject(project: str, domain: str, launch_plan: str) -> str:
    """Where a launch plan's schedule fires: a ``FireLaunchPlan`` command, for any scheduler replica."""
    return f"{FIRES_ROOT}.{tenant(project, domain)}.{token(launch_plan, 'launch plan')}"


def launch_plan_schedule_subject(project: str, domain: str, launch_plan: str) -> str:
    """Where a launch plan's next fire waits (one message schedule: setting it again replaces it)."""
    return f"{SCHEDULES_ROOT}.{tenant(project, domain)}.{token(launch_plan, 'launch plan')}.{LAUNCH_PLAN_TIMER}"


def notification_subject(project: str, domain: str, execution_id: str) -> str:
    """Where the notification of an ended execution is published (and stored)."""
    return f"{NOTIFY_ROOT}.{tenant(project, domain)}.{token(execution_id, 'execution id')}"


def live_output_subject(project: str, domain: str, execution_id: str, attempt_id: str) -> str:
    """Where the output of a running attempt is published as it is written (the attempt id, which holds '/' and
    may hold '[', is in a header; its subject token is a hash of it)."""
    return (
        f"{LIVE_OUTPUT_ROOT}.{tenant(project, domain)}.{token(execution_id, 'execution id')}"
        f".{attempt_token(attempt_id)}"
    )


def attempt_token(attempt_id: str) -> str:
    """One subject token standing for an attempt id (which holds '/' and may hold '['): 16 hex digits of its xxh64."""
    return xxhash.xxh64_hexdigest(attempt_id.encode())


def live_output_filter(project: str, domain: str, execution_id: str) -> str:
    """Every attempt's live output of one execution."""
    return f"{LIVE_OUTPUT_ROOT}.{tenant(project, domain)}.{token(execution_id, 'execution id')}.*"


def catalog_subject(project: str, domain: str, kind: str) -> str:
    """Where the catalog answers the query ``kind`` (a ``CATALOG_*`` name) for one project and domain."""
    return f"{CATALOG_ROOT}.{tenant(project, domain)}.{kind}"


def catalog_subscription(kind: str) -> str:
    """What a catalog replica subscribes to for the query ``kind``, in every project and domain."""
    return f"{CATALOG_ROOT}.*.*.{kind}"


CHECKPOINTS_STREAM = "PLAIT_CHECKPOINTS"
CHECKPOINT_ROOT = "plait.checkpoint"  # signed heads of executions' chains (plait.audit_signatures)


def checkpoint_subject(project: str, domain: str, execution_id: str) -> str:
    return f"{CHECKPOINT_ROOT}.{tenant(project, domain)}.{token(execution_id, 'execution id')}"
