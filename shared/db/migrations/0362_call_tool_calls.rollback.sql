-- Undo 0362_call_tool_calls.
-- depends: 0361_campaign_call_filter
ALTER TABLE calls
    DROP COLUMN IF EXISTS tools,
    DROP COLUMN IF EXISTS tool_failures,
    DROP COLUMN IF EXISTS tool_calls;
