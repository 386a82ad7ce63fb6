-- Conditionals: the nodes of a branch case not taken are 'skipped'; a branch node runs no task (task_name '').

ALTER TABLE node_executions DROP CONSTRAINT node_executions_status_check;
ALTER TABLE node_executions ADD CONSTRAINT node_executions_status_check
    CHECK (status IN ('waiting', 'cache_lookup', 'queued', 'running', 'succeeded', 'failed', 'aborted', 'skipped'));

-- Gates: what an open gate waits for, as a person reads it ('' for any other node).
ALTER TABLE node_executions ADD COLUMN waiting_for text NOT NULL DEFAULT '';

-- What a node is: 'task', or 'branch', or a gate's kind ('signal', 'approve', 'sleep').
ALTER TABLE node_executions ADD COLUMN kind text NOT NULL DEFAULT 'task';
