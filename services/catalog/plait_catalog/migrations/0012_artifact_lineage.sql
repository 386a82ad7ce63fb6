-- Lineage follows artifacts, not values: an artifact is one output of one attempt (or launch, map node, cache hit,
-- constant) of one execution, carrying its value's hash; a use is a node input that read one. Lineage keyed by
-- the value hash alone (artifacts, lineage_edges) linked unrelated executions that met equal values: this release
-- no longer writes nor reads those tables, but leaves them to the replicas of the previous release that still
-- project during a rolling upgrade (dropping them would stop those). `plait catalog rebuild` fills the new tables
-- from the event log, once every replica runs this release.

-- Values by content hash, stored once: what an artifact's preview shows.
CREATE TABLE lineage_values (
    hash text PRIMARY KEY,
    value jsonb,  -- NULL when the value is not stored inline
    size bigint NOT NULL  -- bytes of its canonical encoding
);

CREATE TABLE lineage_artifacts (
    project text NOT NULL,
    domain text NOT NULL,
    artifact_id text NOT NULL,  -- plait.core.lineage.artifact_id: a hash of (execution, node, producer, name)
    execution_id text NOT NULL,
    node_id text NOT NULL,  -- '' for the launch's (workflow inputs); the reading node for a constant
    name text NOT NULL,  -- the output's name (the input's, for the launch's; the place it is read, for a constant)
    producer text NOT NULL CHECK (producer IN ('launch', 'attempt', 'map', 'cache', 'constant', 'dynamic', 'branch', 'gate', 'child')),
    attempt_id text NOT NULL DEFAULT '',  -- the attempt that made it (producer 'attempt')
    value_hash text NOT NULL,
    type jsonb NOT NULL,  -- its TypeSpec
    source_execution text NOT NULL DEFAULT '',  -- producer 'cache': whose output it was
    source_node text NOT NULL DEFAULT '',
    PRIMARY KEY (project, domain, artifact_id)
);
CREATE INDEX lineage_artifacts_by_node ON lineage_artifacts (project, domain, execution_id, node_id, name);
CREATE INDEX lineage_artifacts_by_value ON lineage_artifacts (project, domain, value_hash);
CREATE INDEX lineage_artifacts_by_source ON lineage_artifacts (project, domain, source_execution, source_node)
    WHERE producer = 'cache';

CREATE TABLE lineage_uses (
    project text NOT NULL,
    domain text NOT NULL,
    execution_id text NOT NULL,
    node_id text NOT NULL,  -- '' for the workflow's outputs
    name text NOT NULL,  -- the input (or place in it: xs[0]) that read the artifact
    artifact_id text NOT NULL,
    PRIMARY KEY (project, domain, execution_id, node_id, name)
);
CREATE INDEX lineage_uses_by_artifact ON lineage_uses (project, domain, artifact_id);
