-- Undo 0310_campaigns.
-- depends: 0242_lost_calls
DROP TABLE IF EXISTS tenant_call_limits;
DROP TABLE IF EXISTS dnc_numbers;
DROP TABLE IF EXISTS campaign_attempts;
DROP TABLE IF EXISTS campaign_contacts;
DROP TABLE IF EXISTS campaigns;
