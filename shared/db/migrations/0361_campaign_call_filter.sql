-- The call filters campaign_id and variable find a campaign's calls through its attempts: this
-- index gives the Call SIDs of a campaign without reading its other attempts.
-- depends: 0360_webhooks

CREATE INDEX campaign_attempts_campaign_call ON campaign_attempts (campaign_id, call_sid)
    WHERE call_sid IS NOT NULL;
