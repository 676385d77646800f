-- Undo 0380_call_metadata.
-- depends: 0363_call_aggregate_rollup
DROP INDEX IF EXISTS calls_metadata;
ALTER TABLE calls
    DROP COLUMN IF EXISTS variables,
    DROP COLUMN IF EXISTS metadata;
