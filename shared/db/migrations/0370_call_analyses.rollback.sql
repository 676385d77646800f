-- Undo 0370_call_analyses.
-- depends: 0363_call_aggregate_rollup
DROP TABLE IF EXISTS call_analyses;
DROP FUNCTION IF EXISTS call_analyses_append_only();
DROP TABLE IF EXISTS call_analysis_requests;
