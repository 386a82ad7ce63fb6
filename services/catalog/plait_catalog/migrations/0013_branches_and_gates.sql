-- Conditionals: the nodes of a branch case not taken are 'skipped' (a status 0011 added); a branch node runs no task
-- (task_name '').

-- Gates: what an open gate waits for, as a person reads it ('' for any other node).
ALTER TABLE node_executions ADD COLUMN waiting_for text NOT NULL DEFAULT '';

-- What a node is: 'task', or 'branch', or a gate's kind ('signal', 'approve', 'sleep').
ALTER TABLE node_executions ADD COLUMN kind text NOT NULL DEFAULT 'task';
