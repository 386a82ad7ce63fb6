-- A batch writes an execution row back without its (possibly large, set-once) inputs, which the upsert then
-- keeps as they are: the column must accept the NULL of the row written back. Every launch still sets it.
ALTER TABLE executions ALTER COLUMN inputs DROP NOT NULL;
