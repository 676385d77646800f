-- Undo 0383_call_filter_indexes.
-- depends: 0382_call_exports
DROP INDEX IF EXISTS calls_tenant_tool_failed_time;
DROP INDEX IF EXISTS calls_tools;
DROP INDEX IF EXISTS calls_slots;
