-- Undo 0100_functions_api.
-- depends: 0001_initial
DROP TRIGGER IF EXISTS call_latency_rollup ON call_latency;
DROP TRIGGER IF EXISTS calls_rollup ON calls;
DROP FUNCTION IF EXISTS parley_rebuild_rollups();
DROP FUNCTION IF EXISTS parley_compact_rollups();
DROP FUNCTION IF EXISTS parley_latency_rollup();
DROP FUNCTION IF EXISTS parley_calls_rollup();
DROP FUNCTION IF EXISTS parley_latency_bucket(real);
DROP FUNCTION IF EXISTS parley_utc_day(timestamptz);
DROP TABLE IF EXISTS latency_rollup_deltas, latency_rollup_daily, intent_rollup_deltas,
    intent_rollup_daily, call_rollup_deltas, call_rollup_daily, call_status_events;
DROP INDEX IF EXISTS calls_tenant_to_time;
DROP INDEX IF EXISTS calls_tenant_from_time;
DROP INDEX IF EXISTS knowledge_documents_agent;
ALTER TABLE knowledge_documents DROP COLUMN IF EXISTS content;
