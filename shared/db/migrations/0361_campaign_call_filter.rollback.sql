-- Undo 0361_campaign_call_filter.
-- depends: 0360_webhooks
DROP INDEX IF EXISTS campaign_attempts_campaign_call;
