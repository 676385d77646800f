-- What a call's tools did, on the calls row (filters and aggregates read one table): how many
-- http actions ran, how many failed, and which agent states ran them.
-- depends: 0361_campaign_call_filter

ALTER TABLE calls
    ADD COLUMN tool_calls integer NOT NULL DEFAULT 0,
    ADD COLUMN tool_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN tools text[] NOT NULL DEFAULT ARRAY[]::text[];
