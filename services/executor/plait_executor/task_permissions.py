"""What a task runtime holding a grant may publish and subscribe to: what its attempts need and no more.

- the ``started`` and ``result`` commands of its attempt, on the subject of its scope (the scheduler refuses a
  report there of any other attempt); a map Job's pods share one grant, and so the scope of their node;
- its attempts' live output (``plait.out.<p>.<d>.<execution>.<hash of the attempt>``);
- for a ``@dynamic`` task only, the registration of the tasks it generates in its project (and reading them back);
- the object store buckets (values, the attempt's output, code bundles to read), whose objects are named by
  content hash or attempt, not by project, so no permission can narrow them further;
- replies to its own inbox, ``_INBOX.<p>.<d>.<hash of the attempt>.>``.

Nothing else: no launch, abort or signal, no event, no catalog, no dispatch, no stream management, nothing of
another execution's commands or another attempt's output or inbox.
"""

from __future__ import annotations

from plait.adapters.nats_auth import attempt_inbox
from plait.protocol import subjects
from plait_executor.task_grants import TaskGrant

_OBJECT_STORE = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.NAMES",  # nats-py's object store get looks the bucket's stream up by subject (names only)
    f"$O.{subjects.VALUES_BUCKET}.>",
    f"$O.{subjects.LOGS_BUCKET}.>",
    f"$JS.API.DIRECT.GET.OBJ_{subjects.VALUES_BUCKET}.>",
    f"$JS.API.DIRECT.GET.OBJ_{subjects.LOGS_BUCKET}.>",
    f"$JS.API.DIRECT.GET.OBJ_{subjects.CODE_BUCKET}.>",
    f"$JS.API.STREAM.MSG.GET.OBJ_{subjects.VALUES_BUCKET}",
    f"$JS.API.STREAM.MSG.GET.OBJ_{subjects.LOGS_BUCKET}",
    f"$JS.API.STREAM.MSG.GET.OBJ_{subjects.CODE_BUCKET}",
    f"$JS.API.CONSUMER.CREATE.OBJ_{subjects.VALUES_BUCKET}",
    f"$JS.API.CONSUMER.CREATE.OBJ_{subjects.VALUES_BUCKET}.>",
    f"$JS.API.CONSUMER.CREATE.OBJ_{subjects.CODE_BUCKET}",
    f"$JS.API.CONSUMER.CREATE.OBJ_{subjects.CODE_BUCKET}.>",
    "$JS.FC.>",
)


def report_scopes(grant: TaskGrant) -> list[str]:
    """The scopes its attempts report on (``subjects.command_subject``): each attempt's own, or for a map Job's
    pods, which share one grant, the node's."""
    if grant.map_job:
        return [subjects.node_scope(grant.node)]
    return [subjects.attempt_scope(attempt) for attempt in grant.attempts]


def task_permissions(grant: TaskGrant) -> tuple[list[str], list[str]]:
    """The subjects a connection holding ``grant`` may publish to, and subscribe to."""
    project, domain, execution = grant.project, grant.domain, grant.execution_id
    publish = [
        *(
            subjects.command_subject(project, domain, execution, kind, scope)
            for kind in ("started", "result")
            for scope in report_scopes(grant)
        ),
        *(subjects.live_output_subject(project, domain, execution, attempt) for attempt in grant.attempts),
    ]
    if grant.dynamic:
        registrations = f"{subjects.REGISTRY_ROOT}.{subjects.tenant(project, domain)}"
        publish += [f"{registrations}.task.>", f"$JS.API.DIRECT.GET.{subjects.EVENTS_STREAM}.{registrations}.>"]
    publish += _OBJECT_STORE
    subscribe = [f"{attempt_inbox(project, domain, attempt)}.>" for attempt in grant.attempts]
    return publish, subscribe
