-- Caching and lineage: cache look-ups of nodes, the cache's entries, and the artifacts nodes read and wrote.

ALTER TABLE node_executions DROP CONSTRAINT node_executions_status_check;
ALTER TABLE node_executions ADD CONSTRAINT node_executions_status_check
    CHECK (status IN ('waiting', 'cache_lookup', 'queued', 'running', 'succeeded', 'failed', 'aborted'));
ALTER TABLE node_executions ADD COLUMN cache_key text NOT NULL DEFAULT '';  -- '' for a task that is not cached
ALTER TABLE node_executions ADD COLUMN cached_from text NOT NULL DEFAULT '';  -- 'execution/node' a cache hit reused

ALTER TABLE executions ADD COLUMN overwrite_cache boolean NOT NULL DEFAULT false;

-- One row per filled cache key (the last fill wins); projected from the key's entry subject, removed when cleared.
ALTER TABLE cache_entries ADD COLUMN task_version text NOT NULL;
ALTER TABLE cache_entries ADD COLUMN attempt_id text NOT NULL;
ALTER TABLE cache_entries ADD COLUMN sequence bigint NOT NULL;  -- stream sequence of the fill
CREATE INDEX cache_entries_by_task ON cache_entries (project, domain, task_name, created_at DESC);

CREATE INDEX lineage_edges_by_execution ON lineage_edges (execution_id, node_id);
