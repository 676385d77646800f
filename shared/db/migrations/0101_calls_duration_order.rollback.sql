-- Undo 0101_calls_duration_order.
-- depends: 0100_functions_api
DROP INDEX IF EXISTS calls_tenant_duration;
