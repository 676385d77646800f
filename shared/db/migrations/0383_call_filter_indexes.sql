-- Indexes for the call filters of the list and the export that read every call of the tenant
-- when few match (bench/filters.py measures each before and after): a slot's value and the
-- agent states that ran tools (GIN: @> and &&), and a failed tool call (with the list's time
-- order). Escalation reason, primary intent, end reason and escalated measured no faster with
-- an index of their own (their values are common enough that the newest-first scan finds 50
-- soon), so they have none: every index is paid for on each write of a call.
-- depends: 0382_call_exports

CREATE INDEX calls_slots ON calls USING gin (slots);
CREATE INDEX calls_tools ON calls USING gin (tools);
CREATE INDEX calls_tenant_tool_failed_time ON calls (tenant_id, started_at DESC)
    WHERE tool_failures > 0;
