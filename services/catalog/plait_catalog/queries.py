"""Catalog queries: the request and reply shapes on the wire, and the SQL that answers them.

Datetimes travel as RFC 3339 strings. A reply is either the answer or ``{"error": {...}}``.
"""

from __future__ import annotations

from plait.protocol.executions import (
    AttemptView,
    ExecutionDetail,
    ExecutionList,
    ExecutionShown,
    ExecutionSummary,
    ListExecutions,
    NodeView,
    ShowExecution,
)
from plait.protocol.queries import ErrorReply, error_reply
from plait_catalog.db import Connection

_SUMMARY = """
SELECT e.execution_id, e.project, e.domain, e.workflow_name AS workflow, e.workflow_version AS version, e.status,
       e.launched_at, e.finished_at, extract(epoch FROM e.finished_at - e.launched_at)::float8 AS duration_seconds,
       counts.nodes_total, counts.nodes_succeeded, counts.nodes_failed, counts.nodes_running
       {detail}
FROM {executions} AS e
CROSS JOIN LATERAL (
    SELECT count(*) AS nodes_total,
           count(*) FILTER (WHERE n.status IN ('succeeded', 'recovered')) AS nodes_succeeded,
           count(*) FILTER (WHERE n.status = 'failed') AS nodes_failed,
           count(*) FILTER (WHERE n.status = 'running') AS nodes_running
    FROM node_executions AS n
    WHERE n.project = e.project AND n.domain = e.domain AND n.execution_id = e.execution_id
) AS counts
"""

_NEWEST_FIRST = "ORDER BY launched_at DESC, execution_id DESC"

_SHOW = (
    _SUMMARY.format(  # noqa: S608  constant fragments (table and column names); values are $n parameters
        detail=", e.inputs, e.outputs, e.error, e.failed_node, e.abort_reason, e.launched_by, e.last_sequence"
        ", e.aborted_by, e.relaunch_of, e.recovered_from, ARRAY("
        "SELECT x.execution_id FROM executions AS x WHERE x.project = e.project AND x.domain = e.domain"
        " AND e.execution_id IN (x.relaunch_of, x.recovered_from) ORDER BY x.launched_at, x.execution_id"
        ") AS relaunched_as",
        executions="executions",
    )
    + "WHERE e.project = $1 AND e.domain = $2 AND e.execution_id = $3"
)

_NODES = """
SELECT node_id AS node, task_name AS task, task_version AS version, status, queued_at, started_at, finished_at,
       inputs, outputs, error, recovered_from, skip_reason, waiting_for, kind
FROM node_executions WHERE project = $1 AND domain = $2 AND execution_id = $3 ORDER BY position
"""

_ATTEMPTS = """
SELECT node_id, attempt_id, attempt, status, worker, queued_at, started_at, finished_at, error, stop_reason, total
FROM (
    SELECT *, row_number() OVER by_node AS rank, count(*) OVER (PARTITION BY node_id) AS total
    FROM attempts WHERE project = $1 AND domain = $2 AND execution_id = $3
    WINDOW by_node AS (PARTITION BY node_id ORDER BY attempt, attempt_id)
) AS ranked
WHERE rank <= $4 ORDER BY node_id, attempt, attempt_id
"""


_ATTEMPT_COUNTS = """
SELECT node_id, count(*) FROM attempts WHERE project = $1 AND domain = $2 AND execution_id = $3 GROUP BY node_id
"""


async def list_executions(connection: Connection, request: ListExecutions) -> list[ExecutionSummary]:
    """The newest executions that match the request's filters, newest first."""
    conditions: list[str] = []
    arguments: list[str | int] = []
    for column, value in (("project", request.project), ("domain", request.domain), ("status", request.status)):
        if value is not None:
            arguments.append(value)
            conditions.append(f"{column} = ${len(arguments)}")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    arguments.append(request.limit)
    newest = f"(SELECT * FROM executions {where} {_NEWEST_FIRST} LIMIT ${len(arguments)})"  # noqa: S608  constant fragments; values are $n parameters
    rows = await connection.fetch(_SUMMARY.format(detail="", executions=newest) + _NEWEST_FIRST, *arguments)
    return [ExecutionSummary(**dict(row)) for row in rows]


async def show_execution(connection: Connection, request: ShowExecution) -> ExecutionDetail | None:
    """One execution with its nodes (in workflow order) and, for each node, its first ``attempts_limit`` attempts
    and how many it has; None when it does not exist."""
    execution = (request.project, request.domain, request.execution_id)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        row = await connection.fetchrow(_SHOW, *execution)
        if row is None:
            return None
        attempts: dict[str, list[AttemptView]] = {}
        totals: dict[str, int] = {}
        for attempt in await connection.fetch(_ATTEMPTS, *execution, request.attempts_limit):
            fields = dict(attempt)
            node_id = fields.pop("node_id")
            totals[node_id] = fields.pop("total")
            attempts.setdefault(node_id, []).append(AttemptView(**fields))
        if request.attempts_limit == 0:
            totals = {row["node_id"]: row["count"] for row in await connection.fetch(_ATTEMPT_COUNTS, *execution)}
        nodes = [
            NodeView(**dict(node), attempts=attempts.get(node["node"], []), attempts_total=totals.get(node["node"], 0))
            for node in await connection.fetch(_NODES, *execution)
        ]
    return ExecutionDetail(**dict(row), nodes=nodes)


async def answer_list(connection: Connection, request: ListExecutions) -> ExecutionList:
    return ExecutionList(executions=await list_executions(connection, request))


async def answer_show(connection: Connection, request: ShowExecution) -> ExecutionShown | ErrorReply:
    execution = await show_execution(connection, request)
    if execution is None:
        where = f"{request.project}/{request.domain}"
        return error_reply("not_found", f"execution {request.execution_id} does not exist in {where}")
    return ExecutionShown(execution=execution)
