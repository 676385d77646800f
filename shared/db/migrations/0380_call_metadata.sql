-- What the API client attached to a call it placed: metadata (its own keys, e.g. an order or CRM
-- id, shown with the call and filterable) and variables (passed to the agent as {{ vars.NAME }},
-- like a campaign contact's). A GIN index answers both the metadata filters (? and @>).
-- depends: 0363_call_aggregate_rollup

ALTER TABLE calls
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN variables jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX calls_metadata ON calls USING gin (metadata);
