-- Undo 0230_tenant_audit_log.
-- depends: 0102_calls_transcript_search
DROP TABLE IF EXISTS tenant_audit_log;
