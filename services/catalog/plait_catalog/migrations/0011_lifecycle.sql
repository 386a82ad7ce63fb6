-- Abort, failure policy, relaunch and recovery: who aborted, the links between executions, skipped and recovered
-- nodes, and attempts their executor stopped after their execution ended.

ALTER TABLE node_executions DROP CONSTRAINT node_executions_status_check;
ALTER TABLE node_executions ADD CONSTRAINT node_executions_status_check
    CHECK (status IN (
        'waiting', 'cache_lookup', 'queued', 'running', 'succeeded', 'failed', 'aborted', 'skipped', 'recovered'
    ));
ALTER TABLE node_executions ADD COLUMN recovered_from text NOT NULL DEFAULT '';  -- the execution whose outputs it reused
ALTER TABLE node_executions ADD COLUMN skip_reason text NOT NULL DEFAULT '';

ALTER TABLE attempts DROP CONSTRAINT attempts_status_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'stopped'));
ALTER TABLE attempts ADD COLUMN stop_reason text NOT NULL DEFAULT '';

ALTER TABLE executions ADD COLUMN aborted_by text NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN relaunch_of text NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN recovered_from text NOT NULL DEFAULT '';
CREATE INDEX executions_by_relaunch_of ON executions (project, domain, relaunch_of) WHERE relaunch_of <> '';
CREATE INDEX executions_by_recovered_from ON executions (project, domain, recovered_from) WHERE recovered_from <> '';
