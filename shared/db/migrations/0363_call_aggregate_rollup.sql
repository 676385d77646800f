-- Pre-aggregated calls for GET /v1/calls/aggregate: per tenant, day in the tenant's time zone,
-- agent, disposition, end reason, primary intent and escalation reason, the count, the sums of
-- duration, latency and usage, and fixed-bucket histograms of duration and of the median
-- voice-to-voice latency (p50/p95 are read from them). Kept by the same mechanism as the daily
-- rollups of 0100: a trigger on calls appends signed deltas in the writer's transaction (the
-- consumer's projection, retention, deletions), parley_compact_rollups() folds them in. An
-- update that changes none of the aggregated columns (a replayed event) appends nothing.
-- depends: 0362_call_tool_calls

-- Histogram buckets are logarithmic, 10% wide: duration bucket b holds [1000 * 1.1^b,
-- 1000 * 1.1^(b+1)) ms (b = 0 also everything shorter, b = 95 also everything longer, about
-- 2.6 h and up), latency bucket b holds [100 * 1.1^b, 100 * 1.1^(b+1)) ms (b = 47: 9.7 s and
-- up). A percentile read at its bucket's geometric middle is within 5% of the bucket's values.
CREATE FUNCTION parley_duration_bucket(ms double precision) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
    $$ SELECT least(95, greatest(0, floor(ln(greatest(ms, 1) / 1000.0) / ln(1.1))))::integer $$;
CREATE FUNCTION parley_latency_bucket_v2v(ms double precision) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
    $$ SELECT least(47, greatest(0, floor(ln(greatest(ms, 1) / 100.0) / ln(1.1))))::integer $$;

CREATE FUNCTION parley_tenant_zone(settings jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT COALESCE(settings ->> 'timezone', 'UTC') $$;

CREATE TABLE call_aggregate_daily (
    tenant_id         text NOT NULL,
    day               date NOT NULL,
    agent_id          text,
    disposition       text,
    end_reason        text,
    primary_intent    text,
    escalation_reason text,
    calls             integer NOT NULL,
    duration_n        integer NOT NULL,
    duration_sum      bigint NOT NULL,
    latency_n         integer NOT NULL,
    latency_sum       double precision NOT NULL,
    asr_ms            bigint NOT NULL,
    tts_chars         bigint NOT NULL,
    llm_tokens        bigint NOT NULL,
    dh0 integer NOT NULL, dh1 integer NOT NULL, dh2 integer NOT NULL, dh3 integer NOT NULL,
    dh4 integer NOT NULL, dh5 integer NOT NULL, dh6 integer NOT NULL, dh7 integer NOT NULL,
    dh8 integer NOT NULL, dh9 integer NOT NULL, dh10 integer NOT NULL, dh11 integer NOT NULL,
    dh12 integer NOT NULL, dh13 integer NOT NULL, dh14 integer NOT NULL, dh15 integer NOT NULL,
    dh16 integer NOT NULL, dh17 integer NOT NULL, dh18 integer NOT NULL, dh19 integer NOT NULL,
    dh20 integer NOT NULL, dh21 integer NOT NULL, dh22 integer NOT NULL, dh23 integer NOT NULL,
    dh24 integer NOT NULL, dh25 integer NOT NULL, dh26 integer NOT NULL, dh27 integer NOT NULL,
    dh28 integer NOT NULL, dh29 integer NOT NULL, dh30 integer NOT NULL, dh31 integer NOT NULL,
    dh32 integer NOT NULL, dh33 integer NOT NULL, dh34 integer NOT NULL, dh35 integer NOT NULL,
    dh36 integer NOT NULL, dh37 integer NOT NULL, dh38 integer NOT NULL, dh39 integer NOT NULL,
    dh40 integer NOT NULL, dh41 integer NOT NULL, dh42 integer NOT NULL, dh43 integer NOT NULL,
    dh44 integer NOT NULL, dh45 integer NOT NULL, dh46 integer NOT NULL, dh47 integer NOT NULL,
    dh48 integer NOT NULL, dh49 integer NOT NULL, dh50 integer NOT NULL, dh51 integer NOT NULL,
    dh52 integer NOT NULL, dh53 integer NOT NULL, dh54 integer NOT NULL, dh55 integer NOT NULL,
    dh56 integer NOT NULL, dh57 integer NOT NULL, dh58 integer NOT NULL, dh59 integer NOT NULL,
    dh60 integer NOT NULL, dh61 integer NOT NULL, dh62 integer NOT NULL, dh63 integer NOT NULL,
    dh64 integer NOT NULL, dh65 integer NOT NULL, dh66 integer NOT NULL, dh67 integer NOT NULL,
    dh68 integer NOT NULL, dh69 integer NOT NULL, dh70 integer NOT NULL, dh71 integer NOT NULL,
    dh72 integer NOT NULL, dh73 integer NOT NULL, dh74 integer NOT NULL, dh75 integer NOT NULL,
    dh76 integer NOT NULL, dh77 integer NOT NULL, dh78 integer NOT NULL, dh79 integer NOT NULL,
    dh80 integer NOT NULL, dh81 integer NOT NULL, dh82 integer NOT NULL, dh83 integer NOT NULL,
    dh84 integer NOT NULL, dh85 integer NOT NULL, dh86 integer NOT NULL, dh87 integer NOT NULL,
    dh88 integer NOT NULL, dh89 integer NOT NULL, dh90 integer NOT NULL, dh91 integer NOT NULL,
    dh92 integer NOT NULL, dh93 integer NOT NULL, dh94 integer NOT NULL, dh95 integer NOT NULL,
    lh0 integer NOT NULL, lh1 integer NOT NULL, lh2 integer NOT NULL, lh3 integer NOT NULL,
    lh4 integer NOT NULL, lh5 integer NOT NULL, lh6 integer NOT NULL, lh7 integer NOT NULL,
    lh8 integer NOT NULL, lh9 integer NOT NULL, lh10 integer NOT NULL, lh11 integer NOT NULL,
    lh12 integer NOT NULL, lh13 integer NOT NULL, lh14 integer NOT NULL, lh15 integer NOT NULL,
    lh16 integer NOT NULL, lh17 integer NOT NULL, lh18 integer NOT NULL, lh19 integer NOT NULL,
    lh20 integer NOT NULL, lh21 integer NOT NULL, lh22 integer NOT NULL, lh23 integer NOT NULL,
    lh24 integer NOT NULL, lh25 integer NOT NULL, lh26 integer NOT NULL, lh27 integer NOT NULL,
    lh28 integer NOT NULL, lh29 integer NOT NULL, lh30 integer NOT NULL, lh31 integer NOT NULL,
    lh32 integer NOT NULL, lh33 integer NOT NULL, lh34 integer NOT NULL, lh35 integer NOT NULL,
    lh36 integer NOT NULL, lh37 integer NOT NULL, lh38 integer NOT NULL, lh39 integer NOT NULL,
    lh40 integer NOT NULL, lh41 integer NOT NULL, lh42 integer NOT NULL, lh43 integer NOT NULL,
    lh44 integer NOT NULL, lh45 integer NOT NULL, lh46 integer NOT NULL, lh47 integer NOT NULL,
    UNIQUE NULLS NOT DISTINCT (tenant_id, day, agent_id, disposition, end_reason, primary_intent,
                               escalation_reason)
);

-- Insert-only, like call_rollup_deltas: no hot rows, no deadlocks between concurrent writers.
CREATE TABLE call_aggregate_deltas (LIKE call_aggregate_daily);
CREATE INDEX call_aggregate_deltas_tenant_day ON call_aggregate_deltas (tenant_id, day);

-- One call as a rollup row, times sign (+1 added, -1 removed).
CREATE FUNCTION parley_call_aggregate_row(c calls, zone text, sign integer)
    RETURNS SETOF call_aggregate_deltas LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT c.tenant_id, (c.started_at AT TIME ZONE zone)::date, c.agent_id, c.disposition,
           c.end_reason, c.primary_intent, c.escalation_reason, sign,
           sign * (c.duration_ms IS NOT NULL)::int, sign * COALESCE(c.duration_ms, 0)::bigint,
           sign * (c.voice_to_voice_p50_ms IS NOT NULL)::int,
           sign * COALESCE(c.voice_to_voice_p50_ms, 0)::double precision,
           sign * COALESCE(c.asr_audio_ms, 0)::bigint, sign * COALESCE(c.tts_chars, 0)::bigint,
           sign * COALESCE(c.llm_tokens, 0)::bigint,
           sign * (db = 0)::int, sign * (db = 1)::int, sign * (db = 2)::int,
           sign * (db = 3)::int, sign * (db = 4)::int, sign * (db = 5)::int,
           sign * (db = 6)::int, sign * (db = 7)::int, sign * (db = 8)::int,
           sign * (db = 9)::int, sign * (db = 10)::int, sign * (db = 11)::int,
           sign * (db = 12)::int, sign * (db = 13)::int, sign * (db = 14)::int,
           sign * (db = 15)::int, sign * (db = 16)::int, sign * (db = 17)::int,
           sign * (db = 18)::int, sign * (db = 19)::int, sign * (db = 20)::int,
           sign * (db = 21)::int, sign * (db = 22)::int, sign * (db = 23)::int,
           sign * (db = 24)::int, sign * (db = 25)::int, sign * (db = 26)::int,
           sign * (db = 27)::int, sign * (db = 28)::int, sign * (db = 29)::int,
           sign * (db = 30)::int, sign * (db = 31)::int, sign * (db = 32)::int,
           sign * (db = 33)::int, sign * (db = 34)::int, sign * (db = 35)::int,
           sign * (db = 36)::int, sign * (db = 37)::int, sign * (db = 38)::int,
           sign * (db = 39)::int, sign * (db = 40)::int, sign * (db = 41)::int,
           sign * (db = 42)::int, sign * (db = 43)::int, sign * (db = 44)::int,
           sign * (db = 45)::int, sign * (db = 46)::int, sign * (db = 47)::int,
           sign * (db = 48)::int, sign * (db = 49)::int, sign * (db = 50)::int,
           sign * (db = 51)::int, sign * (db = 52)::int, sign * (db = 53)::int,
           sign * (db = 54)::int, sign * (db = 55)::int, sign * (db = 56)::int,
           sign * (db = 57)::int, sign * (db = 58)::int, sign * (db = 59)::int,
           sign * (db = 60)::int, sign * (db = 61)::int, sign * (db = 62)::int,
           sign * (db = 63)::int, sign * (db = 64)::int, sign * (db = 65)::int,
           sign * (db = 66)::int, sign * (db = 67)::int, sign * (db = 68)::int,
           sign * (db = 69)::int, sign * (db = 70)::int, sign * (db = 71)::int,
           sign * (db = 72)::int, sign * (db = 73)::int, sign * (db = 74)::int,
           sign * (db = 75)::int, sign * (db = 76)::int, sign * (db = 77)::int,
           sign * (db = 78)::int, sign * (db = 79)::int, sign * (db = 80)::int,
           sign * (db = 81)::int, sign * (db = 82)::int, sign * (db = 83)::int,
           sign * (db = 84)::int, sign * (db = 85)::int, sign * (db = 86)::int,
           sign * (db = 87)::int, sign * (db = 88)::int, sign * (db = 89)::int,
           sign * (db = 90)::int, sign * (db = 91)::int, sign * (db = 92)::int,
           sign * (db = 93)::int, sign * (db = 94)::int, sign * (db = 95)::int,
           sign * (lb = 0)::int, sign * (lb = 1)::int, sign * (lb = 2)::int,
           sign * (lb = 3)::int, sign * (lb = 4)::int, sign * (lb = 5)::int,
           sign * (lb = 6)::int, sign * (lb = 7)::int, sign * (lb = 8)::int,
           sign * (lb = 9)::int, sign * (lb = 10)::int, sign * (lb = 11)::int,
           sign * (lb = 12)::int, sign * (lb = 13)::int, sign * (lb = 14)::int,
           sign * (lb = 15)::int, sign * (lb = 16)::int, sign * (lb = 17)::int,
           sign * (lb = 18)::int, sign * (lb = 19)::int, sign * (lb = 20)::int,
           sign * (lb = 21)::int, sign * (lb = 22)::int, sign * (lb = 23)::int,
           sign * (lb = 24)::int, sign * (lb = 25)::int, sign * (lb = 26)::int,
           sign * (lb = 27)::int, sign * (lb = 28)::int, sign * (lb = 29)::int,
           sign * (lb = 30)::int, sign * (lb = 31)::int, sign * (lb = 32)::int,
           sign * (lb = 33)::int, sign * (lb = 34)::int, sign * (lb = 35)::int,
           sign * (lb = 36)::int, sign * (lb = 37)::int, sign * (lb = 38)::int,
           sign * (lb = 39)::int, sign * (lb = 40)::int, sign * (lb = 41)::int,
           sign * (lb = 42)::int, sign * (lb = 43)::int, sign * (lb = 44)::int,
           sign * (lb = 45)::int, sign * (lb = 46)::int, sign * (lb = 47)::int
    -- -1: no value, in no bucket.
    FROM (SELECT COALESCE(parley_duration_bucket(c.duration_ms), -1) AS db,
                 COALESCE(parley_latency_bucket_v2v(c.voice_to_voice_p50_ms), -1) AS lb
          OFFSET 0) b  -- OFFSET 0: the buckets once per call, not once per column
$$;

CREATE FUNCTION parley_calls_aggregate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    zone text;
BEGIN
    IF TG_OP = 'UPDATE'
       AND (OLD.tenant_id, OLD.started_at, OLD.agent_id, OLD.disposition, OLD.end_reason,
            OLD.primary_intent, OLD.escalation_reason, OLD.duration_ms,
            OLD.voice_to_voice_p50_ms, OLD.asr_audio_ms, OLD.tts_chars, OLD.llm_tokens)
           IS NOT DISTINCT FROM
           (NEW.tenant_id, NEW.started_at, NEW.agent_id, NEW.disposition, NEW.end_reason,
            NEW.primary_intent, NEW.escalation_reason, NEW.duration_ms,
            NEW.voice_to_voice_p50_ms, NEW.asr_audio_ms, NEW.tts_chars, NEW.llm_tokens) THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT parley_tenant_zone(settings) INTO zone FROM tenants WHERE tenant_id = OLD.tenant_id;
        INSERT INTO call_aggregate_deltas
            SELECT * FROM parley_call_aggregate_row(OLD, COALESCE(zone, 'UTC'), -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        SELECT parley_tenant_zone(settings) INTO zone FROM tenants WHERE tenant_id = NEW.tenant_id;
        INSERT INTO call_aggregate_deltas
            SELECT * FROM parley_call_aggregate_row(NEW, COALESCE(zone, 'UTC'), 1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER calls_aggregate AFTER INSERT OR UPDATE OR DELETE ON calls
    FOR EACH ROW EXECUTE FUNCTION parley_calls_aggregate();

-- Recompute one tenant's (or, with NULL, every tenant's) aggregate rollup from calls.
CREATE FUNCTION parley_rebuild_call_aggregates(only_tenant text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM call_aggregate_daily WHERE only_tenant IS NULL OR tenant_id = only_tenant;
    DELETE FROM call_aggregate_deltas WHERE only_tenant IS NULL OR tenant_id = only_tenant;
    INSERT INTO call_aggregate_daily
        SELECT r.tenant_id, r.day, r.agent_id, r.disposition, r.end_reason, r.primary_intent,
               r.escalation_reason,
               sum(r.calls), sum(r.duration_n), sum(r.duration_sum), sum(r.latency_n),
               sum(r.latency_sum), sum(r.asr_ms), sum(r.tts_chars), sum(r.llm_tokens),
               sum(r.dh0), sum(r.dh1), sum(r.dh2), sum(r.dh3), sum(r.dh4), sum(r.dh5),
               sum(r.dh6), sum(r.dh7), sum(r.dh8), sum(r.dh9), sum(r.dh10), sum(r.dh11),
               sum(r.dh12), sum(r.dh13), sum(r.dh14), sum(r.dh15), sum(r.dh16), sum(r.dh17),
               sum(r.dh18), sum(r.dh19), sum(r.dh20), sum(r.dh21), sum(r.dh22), sum(r.dh23),
               sum(r.dh24), sum(r.dh25), sum(r.dh26), sum(r.dh27), sum(r.dh28), sum(r.dh29),
               sum(r.dh30), sum(r.dh31), sum(r.dh32), sum(r.dh33), sum(r.dh34), sum(r.dh35),
               sum(r.dh36), sum(r.dh37), sum(r.dh38), sum(r.dh39), sum(r.dh40), sum(r.dh41),
               sum(r.dh42), sum(r.dh43), sum(r.dh44), sum(r.dh45), sum(r.dh46), sum(r.dh47),
               sum(r.dh48), sum(r.dh49), sum(r.dh50), sum(r.dh51), sum(r.dh52), sum(r.dh53),
               sum(r.dh54), sum(r.dh55), sum(r.dh56), sum(r.dh57), sum(r.dh58), sum(r.dh59),
               sum(r.dh60), sum(r.dh61), sum(r.dh62), sum(r.dh63), sum(r.dh64), sum(r.dh65),
               sum(r.dh66), sum(r.dh67), sum(r.dh68), sum(r.dh69), sum(r.dh70), sum(r.dh71),
               sum(r.dh72), sum(r.dh73), sum(r.dh74), sum(r.dh75), sum(r.dh76), sum(r.dh77),
               sum(r.dh78), sum(r.dh79), sum(r.dh80), sum(r.dh81), sum(r.dh82), sum(r.dh83),
               sum(r.dh84), sum(r.dh85), sum(r.dh86), sum(r.dh87), sum(r.dh88), sum(r.dh89),
               sum(r.dh90), sum(r.dh91), sum(r.dh92), sum(r.dh93), sum(r.dh94), sum(r.dh95),
               sum(r.lh0), sum(r.lh1), sum(r.lh2), sum(r.lh3), sum(r.lh4), sum(r.lh5),
               sum(r.lh6), sum(r.lh7), sum(r.lh8), sum(r.lh9), sum(r.lh10), sum(r.lh11),
               sum(r.lh12), sum(r.lh13), sum(r.lh14), sum(r.lh15), sum(r.lh16), sum(r.lh17),
               sum(r.lh18), sum(r.lh19), sum(r.lh20), sum(r.lh21), sum(r.lh22), sum(r.lh23),
               sum(r.lh24), sum(r.lh25), sum(r.lh26), sum(r.lh27), sum(r.lh28), sum(r.lh29),
               sum(r.lh30), sum(r.lh31), sum(r.lh32), sum(r.lh33), sum(r.lh34), sum(r.lh35),
               sum(r.lh36), sum(r.lh37), sum(r.lh38), sum(r.lh39), sum(r.lh40), sum(r.lh41),
               sum(r.lh42), sum(r.lh43), sum(r.lh44), sum(r.lh45), sum(r.lh46), sum(r.lh47)
        FROM calls c JOIN tenants t USING (tenant_id),
             LATERAL parley_call_aggregate_row(c, parley_tenant_zone(t.settings), 1) r
        WHERE only_tenant IS NULL OR c.tenant_id = only_tenant
        GROUP BY 1, 2, 3, 4, 5, 6, 7;
END $$;

-- Days are the tenant's: a new time zone moves every call's day, so the rollup is rebuilt in the
-- same transaction that changes it.
CREATE FUNCTION parley_tenant_zone_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF parley_tenant_zone(OLD.settings) IS DISTINCT FROM parley_tenant_zone(NEW.settings) THEN
        PERFORM parley_rebuild_call_aggregates(NEW.tenant_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tenants_zone_aggregate AFTER UPDATE OF settings ON tenants
    FOR EACH ROW EXECUTE FUNCTION parley_tenant_zone_changed();

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
    WITH moved AS (DELETE FROM call_aggregate_deltas RETURNING *)
    INSERT INTO call_aggregate_daily AS r
        SELECT tenant_id, day, agent_id, disposition, end_reason, primary_intent, escalation_reason,
               sum(calls), sum(duration_n), sum(duration_sum), sum(latency_n),
               sum(latency_sum), sum(asr_ms), sum(tts_chars), sum(llm_tokens), sum(dh0),
               sum(dh1), sum(dh2), sum(dh3), sum(dh4), sum(dh5), sum(dh6), sum(dh7), sum(dh8),
               sum(dh9), sum(dh10), sum(dh11), sum(dh12), sum(dh13), sum(dh14), sum(dh15),
               sum(dh16), sum(dh17), sum(dh18), sum(dh19), sum(dh20), sum(dh21), sum(dh22),
               sum(dh23), sum(dh24), sum(dh25), sum(dh26), sum(dh27), sum(dh28), sum(dh29),
               sum(dh30), sum(dh31), sum(dh32), sum(dh33), sum(dh34), sum(dh35), sum(dh36),
               sum(dh37), sum(dh38), sum(dh39), sum(dh40), sum(dh41), sum(dh42), sum(dh43),
               sum(dh44), sum(dh45), sum(dh46), sum(dh47), sum(dh48), sum(dh49), sum(dh50),
               sum(dh51), sum(dh52), sum(dh53), sum(dh54), sum(dh55), sum(dh56), sum(dh57),
               sum(dh58), sum(dh59), sum(dh60), sum(dh61), sum(dh62), sum(dh63), sum(dh64),
               sum(dh65), sum(dh66), sum(dh67), sum(dh68), sum(dh69), sum(dh70), sum(dh71),
               sum(dh72), sum(dh73), sum(dh74), sum(dh75), sum(dh76), sum(dh77), sum(dh78),
               sum(dh79), sum(dh80), sum(dh81), sum(dh82), sum(dh83), sum(dh84), sum(dh85),
               sum(dh86), sum(dh87), sum(dh88), sum(dh89), sum(dh90), sum(dh91), sum(dh92),
               sum(dh93), sum(dh94), sum(dh95), sum(lh0), sum(lh1), sum(lh2), sum(lh3),
               sum(lh4), sum(lh5), sum(lh6), sum(lh7), sum(lh8), sum(lh9), sum(lh10),
               sum(lh11), sum(lh12), sum(lh13), sum(lh14), sum(lh15), sum(lh16), sum(lh17),
               sum(lh18), sum(lh19), sum(lh20), sum(lh21), sum(lh22), sum(lh23), sum(lh24),
               sum(lh25), sum(lh26), sum(lh27), sum(lh28), sum(lh29), sum(lh30), sum(lh31),
               sum(lh32), sum(lh33), sum(lh34), sum(lh35), sum(lh36), sum(lh37), sum(lh38),
               sum(lh39), sum(lh40), sum(lh41), sum(lh42), sum(lh43), sum(lh44), sum(lh45),
               sum(lh46), sum(lh47)
        FROM moved GROUP BY tenant_id, day, agent_id, disposition, end_reason, primary_intent, escalation_reason
        ORDER BY tenant_id, day, agent_id, disposition, end_reason, primary_intent, escalation_reason
    ON CONFLICT (tenant_id, day, agent_id, disposition, end_reason, primary_intent,
                 escalation_reason) DO UPDATE SET
        calls = r.calls + EXCLUDED.calls, duration_n = r.duration_n + EXCLUDED.duration_n,
        duration_sum = r.duration_sum + EXCLUDED.duration_sum,
        latency_n = r.latency_n + EXCLUDED.latency_n,
        latency_sum = r.latency_sum + EXCLUDED.latency_sum,
        asr_ms = r.asr_ms + EXCLUDED.asr_ms, tts_chars = r.tts_chars + EXCLUDED.tts_chars,
        llm_tokens = r.llm_tokens + EXCLUDED.llm_tokens, dh0 = r.dh0 + EXCLUDED.dh0,
        dh1 = r.dh1 + EXCLUDED.dh1, dh2 = r.dh2 + EXCLUDED.dh2, dh3 = r.dh3 + EXCLUDED.dh3,
        dh4 = r.dh4 + EXCLUDED.dh4, dh5 = r.dh5 + EXCLUDED.dh5, dh6 = r.dh6 + EXCLUDED.dh6,
        dh7 = r.dh7 + EXCLUDED.dh7, dh8 = r.dh8 + EXCLUDED.dh8, dh9 = r.dh9 + EXCLUDED.dh9,
        dh10 = r.dh10 + EXCLUDED.dh10, dh11 = r.dh11 + EXCLUDED.dh11,
        dh12 = r.dh12 + EXCLUDED.dh12, dh13 = r.dh13 + EXCLUDED.dh13,
        dh14 = r.dh14 + EXCLUDED.dh14, dh15 = r.dh15 + EXCLUDED.dh15,
        dh16 = r.dh16 + EXCLUDED.dh16, dh17 = r.dh17 + EXCLUDED.dh17,
        dh18 = r.dh18 + EXCLUDED.dh18, dh19 = r.dh19 + EXCLUDED.dh19,
        dh20 = r.dh20 + EXCLUDED.dh20, dh21 = r.dh21 + EXCLUDED.dh21,
        dh22 = r.dh22 + EXCLUDED.dh22, dh23 = r.dh23 + EXCLUDED.dh23,
        dh24 = r.dh24 + EXCLUDED.dh24, dh25 = r.dh25 + EXCLUDED.dh25,
        dh26 = r.dh26 + EXCLUDED.dh26, dh27 = r.dh27 + EXCLUDED.dh27,
        dh28 = r.dh28 + EXCLUDED.dh28, dh29 = r.dh29 + EXCLUDED.dh29,
        dh30 = r.dh30 + EXCLUDED.dh30, dh31 = r.dh31 + EXCLUDED.dh31,
        dh32 = r.dh32 + EXCLUDED.dh32, dh33 = r.dh33 + EXCLUDED.dh33,
        dh34 = r.dh34 + EXCLUDED.dh34, dh35 = r.dh35 + EXCLUDED.dh35,
        dh36 = r.dh36 + EXCLUDED.dh36, dh37 = r.dh37 + EXCLUDED.dh37,
        dh38 = r.dh38 + EXCLUDED.dh38, dh39 = r.dh39 + EXCLUDED.dh39,
        dh40 = r.dh40 + EXCLUDED.dh40, dh41 = r.dh41 + EXCLUDED.dh41,
        dh42 = r.dh42 + EXCLUDED.dh42, dh43 = r.dh43 + EXCLUDED.dh43,
        dh44 = r.dh44 + EXCLUDED.dh44, dh45 = r.dh45 + EXCLUDED.dh45,
        dh46 = r.dh46 + EXCLUDED.dh46, dh47 = r.dh47 + EXCLUDED.dh47,
        dh48 = r.dh48 + EXCLUDED.dh48, dh49 = r.dh49 + EXCLUDED.dh49,
        dh50 = r.dh50 + EXCLUDED.dh50, dh51 = r.dh51 + EXCLUDED.dh51,
        dh52 = r.dh52 + EXCLUDED.dh52, dh53 = r.dh53 + EXCLUDED.dh53,
        dh54 = r.dh54 + EXCLUDED.dh54, dh55 = r.dh55 + EXCLUDED.dh55,
        dh56 = r.dh56 + EXCLUDED.dh56, dh57 = r.dh57 + EXCLUDED.dh57,
        dh58 = r.dh58 + EXCLUDED.dh58, dh59 = r.dh59 + EXCLUDED.dh59,
        dh60 = r.dh60 + EXCLUDED.dh60, dh61 = r.dh61 + EXCLUDED.dh61,
        dh62 = r.dh62 + EXCLUDED.dh62, dh63 = r.dh63 + EXCLUDED.dh63,
        dh64 = r.dh64 + EXCLUDED.dh64, dh65 = r.dh65 + EXCLUDED.dh65,
        dh66 = r.dh66 + EXCLUDED.dh66, dh67 = r.dh67 + EXCLUDED.dh67,
        dh68 = r.dh68 + EXCLUDED.dh68, dh69 = r.dh69 + EXCLUDED.dh69,
        dh70 = r.dh70 + EXCLUDED.dh70, dh71 = r.dh71 + EXCLUDED.dh71,
        dh72 = r.dh72 + EXCLUDED.dh72, dh73 = r.dh73 + EXCLUDED.dh73,
        dh74 = r.dh74 + EXCLUDED.dh74, dh75 = r.dh75 + EXCLUDED.dh75,
        dh76 = r.dh76 + EXCLUDED.dh76, dh77 = r.dh77 + EXCLUDED.dh77,
        dh78 = r.dh78 + EXCLUDED.dh78, dh79 = r.dh79 + EXCLUDED.dh79,
        dh80 = r.dh80 + EXCLUDED.dh80, dh81 = r.dh81 + EXCLUDED.dh81,
        dh82 = r.dh82 + EXCLUDED.dh82, dh83 = r.dh83 + EXCLUDED.dh83,
        dh84 = r.dh84 + EXCLUDED.dh84, dh85 = r.dh85 + EXCLUDED.dh85,
        dh86 = r.dh86 + EXCLUDED.dh86, dh87 = r.dh87 + EXCLUDED.dh87,
        dh88 = r.dh88 + EXCLUDED.dh88, dh89 = r.dh89 + EXCLUDED.dh89,
        dh90 = r.dh90 + EXCLUDED.dh90, dh91 = r.dh91 + EXCLUDED.dh91,
        dh92 = r.dh92 + EXCLUDED.dh92, dh93 = r.dh93 + EXCLUDED.dh93,
        dh94 = r.dh94 + EXCLUDED.dh94, dh95 = r.dh95 + EXCLUDED.dh95,
        lh0 = r.lh0 + EXCLUDED.lh0, lh1 = r.lh1 + EXCLUDED.lh1, lh2 = r.lh2 + EXCLUDED.lh2,
        lh3 = r.lh3 + EXCLUDED.lh3, lh4 = r.lh4 + EXCLUDED.lh4, lh5 = r.lh5 + EXCLUDED.lh5,
        lh6 = r.lh6 + EXCLUDED.lh6, lh7 = r.lh7 + EXCLUDED.lh7, lh8 = r.lh8 + EXCLUDED.lh8,
        lh9 = r.lh9 + EXCLUDED.lh9, lh10 = r.lh10 + EXCLUDED.lh10,
        lh11 = r.lh11 + EXCLUDED.lh11, lh12 = r.lh12 + EXCLUDED.lh12,
        lh13 = r.lh13 + EXCLUDED.lh13, lh14 = r.lh14 + EXCLUDED.lh14,
        lh15 = r.lh15 + EXCLUDED.lh15, lh16 = r.lh16 + EXCLUDED.lh16,
        lh17 = r.lh17 + EXCLUDED.lh17, lh18 = r.lh18 + EXCLUDED.lh18,
        lh19 = r.lh19 + EXCLUDED.lh19, lh20 = r.lh20 + EXCLUDED.lh20,
        lh21 = r.lh21 + EXCLUDED.lh21, lh22 = r.lh22 + EXCLUDED.lh22,
        lh23 = r.lh23 + EXCLUDED.lh23, lh24 = r.lh24 + EXCLUDED.lh24,
        lh25 = r.lh25 + EXCLUDED.lh25, lh26 = r.lh26 + EXCLUDED.lh26,
        lh27 = r.lh27 + EXCLUDED.lh27, lh28 = r.lh28 + EXCLUDED.lh28,
        lh29 = r.lh29 + EXCLUDED.lh29, lh30 = r.lh30 + EXCLUDED.lh30,
        lh31 = r.lh31 + EXCLUDED.lh31, lh32 = r.lh32 + EXCLUDED.lh32,
        lh33 = r.lh33 + EXCLUDED.lh33, lh34 = r.lh34 + EXCLUDED.lh34,
        lh35 = r.lh35 + EXCLUDED.lh35, lh36 = r.lh36 + EXCLUDED.lh36,
        lh37 = r.lh37 + EXCLUDED.lh37, lh38 = r.lh38 + EXCLUDED.lh38,
        lh39 = r.lh39 + EXCLUDED.lh39, lh40 = r.lh40 + EXCLUDED.lh40,
        lh41 = r.lh41 + EXCLUDED.lh41, lh42 = r.lh42 + EXCLUDED.lh42,
        lh43 = r.lh43 + EXCLUDED.lh43, lh44 = r.lh44 + EXCLUDED.lh44,
        lh45 = r.lh45 + EXCLUDED.lh45, lh46 = r.lh46 + EXCLUDED.lh46,
        lh47 = r.lh47 + EXCLUDED.lh47;
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION parley_rebuild_rollups() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE call_rollup_deltas, intent_rollup_deltas, latency_rollup_deltas,
               call_aggregate_deltas IN EXCLUSIVE MODE;
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
    PERFORM parley_rebuild_call_aggregates(NULL);
END $$;

-- Calls written before this migration.
SELECT parley_rebuild_call_aggregates(NULL);
