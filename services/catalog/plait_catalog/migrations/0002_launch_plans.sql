-- Launch plans are registered entities too.
ALTER TABLE registry_entities DROP CONSTRAINT registry_entities_kind_check;
ALTER TABLE registry_entities ADD CONSTRAINT registry_entities_kind_check
    CHECK (kind IN ('task', 'workflow', 'launch_plan'));
