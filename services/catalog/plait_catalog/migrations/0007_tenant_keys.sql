-- An execution id is unique only within its project and domain: the same id in another one is another execution.
-- Every row of an execution (its nodes, attempts and lineage edges) is keyed by project and domain as well.

ALTER TABLE attempts DROP CONSTRAINT attempts_execution_id_node_id_fkey;
ALTER TABLE node_executions DROP CONSTRAINT node_executions_execution_id_fkey;

ALTER TABLE node_executions ADD COLUMN project text, ADD COLUMN domain text;
UPDATE node_executions AS n SET project = e.project, domain = e.domain
FROM executions AS e WHERE e.execution_id = n.execution_id;

ALTER TABLE attempts ADD COLUMN project text, ADD COLUMN domain text;
UPDATE attempts AS a SET project = e.project, domain = e.domain
FROM executions AS e WHERE e.execution_id = a.execution_id;

ALTER TABLE lineage_edges ADD COLUMN project text, ADD COLUMN domain text;
UPDATE lineage_edges AS l SET project = e.project, domain = e.domain
FROM executions AS e WHERE e.execution_id = l.execution_id;
-- The projection writes an execution's edges with its row, so none is left without one; if some were, no query
-- could place them in a project: they go, and a rebuild would not make them again either.
DELETE FROM lineage_edges WHERE project IS NULL;

ALTER TABLE node_executions ALTER COLUMN project SET NOT NULL, ALTER COLUMN domain SET NOT NULL;
ALTER TABLE attempts ALTER COLUMN project SET NOT NULL, ALTER COLUMN domain SET NOT NULL;
ALTER TABLE lineage_edges ALTER COLUMN project SET NOT NULL, ALTER COLUMN domain SET NOT NULL;

ALTER TABLE executions DROP CONSTRAINT executions_pkey;
ALTER TABLE executions ADD PRIMARY KEY (project, domain, execution_id);

ALTER TABLE node_executions DROP CONSTRAINT node_executions_pkey;
ALTER TABLE node_executions ADD PRIMARY KEY (project, domain, execution_id, node_id);
ALTER TABLE node_executions ADD FOREIGN KEY (project, domain, execution_id) REFERENCES executions ON DELETE CASCADE;

ALTER TABLE attempts DROP CONSTRAINT attempts_pkey;
ALTER TABLE attempts ADD PRIMARY KEY (project, domain, attempt_id);
ALTER TABLE attempts ADD FOREIGN KEY (project, domain, execution_id, node_id)
    REFERENCES node_executions ON DELETE CASCADE;
DROP INDEX attempts_by_node;
CREATE INDEX attempts_by_node ON attempts (project, domain, execution_id, node_id, attempt);

ALTER TABLE lineage_edges DROP CONSTRAINT lineage_edges_pkey;
ALTER TABLE lineage_edges ADD PRIMARY KEY (project, domain, execution_id, node_id, direction, name);
DROP INDEX lineage_edges_by_execution;  -- the primary key leads with the same columns
DROP INDEX lineage_edges_by_artifact;
CREATE INDEX lineage_edges_by_artifact ON lineage_edges (project, domain, artifact_hash, direction);
