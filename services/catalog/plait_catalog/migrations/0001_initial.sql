-- The catalog's first schema: projections of the event log, and tables that later projections fill.

CREATE TABLE projection_offsets (
    projection text PRIMARY KEY,
    sequence bigint NOT NULL DEFAULT 0  -- the last stream sequence applied
);
INSERT INTO projection_offsets (projection, sequence) VALUES ('main', 0);

CREATE TABLE registry_entities (
    kind text NOT NULL CHECK (kind IN ('task', 'workflow')),
    project text NOT NULL,
    domain text NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    spec jsonb NOT NULL,
    registered_at timestamptz NOT NULL,
    sequence bigint NOT NULL,
    PRIMARY KEY (kind, project, domain, name, version)
);
CREATE INDEX registry_entities_by_name ON registry_entities (kind, project, domain, name, registered_at DESC);

CREATE TABLE executions (
    execution_id text PRIMARY KEY,
    project text NOT NULL,
    domain text NOT NULL,
    workflow_name text NOT NULL,
    workflow_version text NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'aborted')),
    inputs jsonb NOT NULL,
    outputs jsonb,
    error jsonb,
    failed_node text,
    abort_reason text,
    launched_by text NOT NULL,
    launched_at timestamptz NOT NULL,
    finished_at timestamptz,
    last_sequence bigint NOT NULL
);
CREATE INDEX executions_by_launch ON executions (launched_at DESC, execution_id DESC);
CREATE INDEX executions_by_status ON executions (status, launched_at DESC, execution_id DESC);
CREATE INDEX executions_by_project ON executions (project, domain, launched_at DESC, execution_id DESC);

CREATE TABLE node_executions (
    execution_id text NOT NULL REFERENCES executions ON DELETE CASCADE,
    node_id text NOT NULL,
    position integer NOT NULL,  -- the node's place in the workflow's (topological) node order
    task_name text NOT NULL,
    task_version text NOT NULL,
    status text NOT NULL CHECK (status IN ('waiting', 'queued', 'running', 'succeeded', 'failed', 'aborted')),
    inputs jsonb,
    outputs jsonb,
    error jsonb,
    queued_at timestamptz,  -- when the first attempt was queued
    started_at timestamptz,  -- when the first attempt started
    finished_at timestamptz,
    PRIMARY KEY (execution_id, node_id)
);

CREATE TABLE attempts (
    attempt_id text PRIMARY KEY,
    execution_id text NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    worker text NOT NULL DEFAULT '',
    queued_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    error jsonb,
    FOREIGN KEY (execution_id, node_id) REFERENCES node_executions ON DELETE CASCADE
);
CREATE INDEX attempts_by_node ON attempts (execution_id, node_id, attempt);

-- Filled by later projections: values by content hash, lineage, and the task cache.

CREATE TABLE artifacts (
    hash text PRIMARY KEY,  -- content hash of the value's canonical encoding
    type jsonb NOT NULL,  -- its TypeSpec
    value jsonb,  -- inline value; NULL when the value lives in the object store
    size bigint NOT NULL
);

CREATE TABLE lineage_edges (
    artifact_hash text NOT NULL REFERENCES artifacts,
    execution_id text NOT NULL,
    node_id text NOT NULL,  -- '' for the workflow's own inputs and outputs
    direction text NOT NULL CHECK (direction IN ('input', 'output')),
    name text NOT NULL,
    PRIMARY KEY (execution_id, node_id, direction, name)
);
CREATE INDEX lineage_edges_by_artifact ON lineage_edges (artifact_hash, direction);

CREATE TABLE cache_entries (
    project text NOT NULL,
    domain text NOT NULL,
    cache_key text NOT NULL,
    task_name text NOT NULL,
    outputs jsonb NOT NULL,
    execution_id text NOT NULL,
    node_id text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (project, domain, cache_key)
);
