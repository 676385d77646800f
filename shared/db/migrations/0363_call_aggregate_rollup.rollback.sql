-- Undo 0363_call_aggregate_rollup.
-- depends: 0362_call_tool_calls
DROP TRIGGER IF EXISTS tenants_zone_aggregate ON tenants;
DROP TRIGGER IF EXISTS calls_aggregate ON calls;
-- The rollup functions as 0100 defined them (without the aggregate rollup).
-- Fold deltas into the daily tables; one compactor at a time (others return at once).
CREATE OR REPLACE FUNCTION parley_compact_rollups() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('parley_compact_rollups')) THEN
        RETURN false;
    END IF;
    WITH moved AS (DELETE FROM call_rollup_deltas RETURNING *)
    INSERT INTO call_rollup_daily AS r
        SELECT tenant_id, day, agent_id, disposition, sum(calls), sum(duration_ms)
        FROM moved GROUP BY tenant_id, day, agent_id, disposition
        ORDER BY tenant_id, day, agent_id, disposition
    ON CONFLICT (tenant_id, day, agent_id, disposition) DO UPDATE
        SET calls = r.calls + EXCLUDED.calls, duration_ms = r.duration_ms + EXCLUDED.duration_ms;
    WITH moved AS (DELETE FROM intent_rollup_deltas RETURNING *)
    INSERT INTO intent_rollup_daily AS r
        SELECT tenant_id, day, agent_id, intent, sum(calls)
        FROM moved GROUP BY tenant_id, day, agent_id, intent
        ORDER BY tenant_id, day, agent_id, intent
    ON CONFLICT (tenant_id, day, agent_id, intent) DO UPDATE SET calls = r.calls + EXCLUDED.calls;
    WITH moved AS (DELETE FROM latency_rollup_deltas RETURNING *)
    INSERT INTO latency_rollup_daily AS r
        SELECT tenant_id, day, agent_id, bucket, sum(turns)
        FROM moved GROUP BY tenant_id, day, agent_id, bucket
        ORDER BY tenant_id, day, agent_id, bucket
    ON CONFLICT (tenant_id, day, agent_id, bucket) DO UPDATE SET turns = r.turns + EXCLUDED.turns;
    RETURN true;
END $$;

-- Recompute every rollup from the raw tables (after a bulk load with triggers off, or a repair).
CREATE OR REPLACE FUNCTION parley_rebuild_rollups() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE call_rollup_deltas, intent_rollup_deltas, latency_rollup_deltas IN EXCLUSIVE MODE;
    TRUNCATE call_rollup_daily, call_rollup_deltas, intent_rollup_daily, intent_rollup_deltas,
             latency_rollup_daily, latency_rollup_deltas;
    INSERT INTO call_rollup_daily
        SELECT tenant_id, parley_utc_day(started_at), COALESCE(agent_id, ''),
               COALESCE(disposition, ''), count(*), COALESCE(sum(duration_ms), 0)
        FROM calls GROUP BY 1, 2, 3, 4;
    INSERT INTO intent_rollup_daily
        SELECT tenant_id, parley_utc_day(started_at), COALESCE(agent_id, ''), i, count(*)
        FROM calls, unnest(intents) AS i GROUP BY 1, 2, 3, 4;
    INSERT INTO latency_rollup_daily
        SELECT c.tenant_id, parley_utc_day(c.started_at), COALESCE(c.agent_id, ''),
               parley_latency_bucket(l.voice_to_voice_ms), count(*)
        FROM call_latency l JOIN calls c USING (call_id)
        WHERE l.voice_to_voice_ms IS NOT NULL GROUP BY 1, 2, 3, 4;
END $$;
DROP FUNCTION IF EXISTS parley_tenant_zone_changed();
DROP FUNCTION IF EXISTS parley_rebuild_call_aggregates(text);
DROP FUNCTION IF EXISTS parley_calls_aggregate();
DROP FUNCTION IF EXISTS parley_call_aggregate_row(calls, text, integer);
DROP TABLE IF EXISTS call_aggregate_deltas, call_aggregate_daily;
DROP FUNCTION IF EXISTS parley_tenant_zone(jsonb);
DROP FUNCTION IF EXISTS parley_latency_bucket_v2v(double precision);
DROP FUNCTION IF EXISTS parley_duration_bucket(double precision);
