-- Undo 0350_campaign_dispositions.
-- depends: 0310_campaigns
DROP TRIGGER IF EXISTS calls_campaign_disposition ON calls;
DROP FUNCTION IF EXISTS parley_campaign_disposition();
