-- Undo 0310_campaigns.
-- depends: 0242_lost_calls
DROP TRIGGER IF EXISTS calls_opt_out ON calls;
DROP FUNCTION IF EXISTS parley_caller_opt_out();
DROP TABLE IF EXISTS tenant_call_limits;
DROP TABLE IF EXISTS dnc_numbers;
DROP TABLE IF EXISTS campaign_attempts;
DROP TABLE IF EXISTS campaign_contacts;
DROP TABLE IF EXISTS campaigns;
