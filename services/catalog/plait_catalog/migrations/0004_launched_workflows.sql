-- The workflow specs executions were launched with, once per version: lineage types values by their interfaces.

CREATE TABLE launched_workflows (
    project text NOT NULL,
    domain text NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    spec jsonb NOT NULL,  -- the WorkflowSpec of the first launch of this version (versions are content hashes)
    PRIMARY KEY (project, domain, name, version)
);
