-- Indexes for the call filters of the list and the export that no earlier index answers, so a
-- rare value is found without reading the tenant's calls newest first until 50 match
-- (bench/filters.py measures each before and after): escalation reason, primary intent, end
-- reason, escalated, a failed tool call (each with the list's time order), the slots (? and @>)
-- and the agent states that ran tools (&&).
-- depends: 0382_call_exports

CREATE INDEX calls_tenant_escalation_time ON calls (tenant_id, escalation_reason, started_at DESC)
    WHERE escalation_reason IS NOT NULL;
CREATE INDEX calls_tenant_primary_intent_time ON calls (tenant_id, primary_intent, started_at DESC);
CREATE INDEX calls_tenant_end_reason_time ON calls (tenant_id, end_reason, started_at DESC);
CREATE INDEX calls_tenant_escalated_time ON calls (tenant_id, started_at DESC)
    WHERE escalation_reason IS NOT NULL OR disposition = 'escalated_to_human';
CREATE INDEX calls_tenant_tool_failed_time ON calls (tenant_id, started_at DESC)
    WHERE tool_failures > 0;
CREATE INDEX calls_slots ON calls USING gin (slots);
CREATE INDEX calls_tools ON calls USING gin (tools);
