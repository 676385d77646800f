-- The HTTP API's Lambda functions: call status history, knowledge document text, list indexes,
-- and daily rollups for the analytics summaries.
-- depends: 0001_initial

-- Every Twilio status callback as received (one row per call and status: duplicates are no-ops).
CREATE TABLE call_status_events (
    call_sid         text NOT NULL,
    status           text NOT NULL,
    sequence_number  integer,
    callback_at      timestamptz,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_sid, status)
);

-- The text of an uploaded knowledge document, so the agent's whole knowledge base can be re-indexed.
ALTER TABLE knowledge_documents ADD COLUMN content text NOT NULL DEFAULT '';
CREATE INDEX knowledge_documents_agent ON knowledge_documents (tenant_id, agent_id, created_at);

-- GET /v1/calls?number=...: the caller's or the dialled number, newest first.
CREATE INDEX calls_tenant_from_time ON calls (tenant_id, from_number, started_at DESC);
CREATE INDEX calls_tenant_to_time ON calls (tenant_id, to_number, started_at DESC);

-- Daily rollups (UTC days). Triggers append signed deltas (insert-only: no hot rows, no
-- deadlocks between concurrent writers); parley_compact_rollups() folds them into the *_daily
-- tables in one statement, so a reader summing daily + deltas always sees consistent totals.
CREATE TABLE call_rollup_daily (
    tenant_id     text NOT NULL,
    day           date NOT NULL,
    agent_id      text NOT NULL,            -- '' when the call has no agent
    disposition   text NOT NULL,            -- '' while the call has none
    calls         bigint NOT NULL,
    duration_ms   bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, disposition)
);
CREATE TABLE call_rollup_deltas (
    tenant_id     text NOT NULL,
    day           date NOT NULL,
    agent_id      text NOT NULL,
    disposition   text NOT NULL,
    calls         integer NOT NULL,
    duration_ms   bigint NOT NULL
);
CREATE INDEX call_rollup_deltas_tenant_day ON call_rollup_deltas (tenant_id, day);

CREATE TABLE intent_rollup_daily (
    tenant_id     text NOT NULL,
    day           date NOT NULL,
    agent_id      text NOT NULL,
    intent        text NOT NULL,
    calls         bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, intent)
);
CREATE TABLE intent_rollup_deltas (
    tenant_id     text NOT NULL,
    day           date NOT NULL,
    agent_id      text NOT NULL,
    intent        text NOT NULL,
    calls         integer NOT NULL
);
CREATE INDEX intent_rollup_deltas_tenant_day ON intent_rollup_deltas (tenant_id, day);

-- Voice-to-voice latency histogram with logarithmic buckets 2.5% wide (bucket b holds
-- [1.025^b, 1.025^(b+1)) ms): p50/p95 read at a bucket's middle are within 1.25%, and a day of
-- one agent needs a few dozen rows however many turns it had.
CREATE TABLE latency_rollup_daily (
    tenant_id     text NOT NULL,
    day           date NOT NULL,
    agent_id      text NOT NULL,
    bucket        smallint NOT NULL,
    turns         bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, agent_id, bucket)
);
CREATE TABLE latency_rollup_deltas (
    tenant_id     text NOT NULL,
    day           date NOT NULL,
    agent_id      text NOT NULL,
    bucket        smallint NOT NULL,
    turns         integer NOT NULL
);
CREATE INDEX latency_rollup_deltas_tenant_day ON latency_rollup_deltas (tenant_id, day);

CREATE FUNCTION parley_utc_day(ts timestamptz) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (ts AT TIME ZONE 'UTC')::date $$;

CREATE FUNCTION parley_latency_bucket(ms real) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms < 1 THEN 0 ELSE LEAST(floor(ln(ms::float8) / ln(1.025)), 600) END::smallint
$$;

CREATE FUNCTION parley_calls_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.tenant_id = NEW.tenant_id
       AND OLD.started_at = NEW.started_at
       AND OLD.agent_id IS NOT DISTINCT FROM NEW.agent_id
       AND OLD.disposition IS NOT DISTINCT FROM NEW.disposition
       AND OLD.duration_ms IS NOT DISTINCT FROM NEW.duration_ms
       AND OLD.intents = NEW.intents THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO call_rollup_deltas VALUES (OLD.tenant_id, parley_utc_day(OLD.started_at),
            COALESCE(OLD.agent_id, ''), COALESCE(OLD.disposition, ''), -1,
            -COALESCE(OLD.duration_ms, 0));
        INSERT INTO intent_rollup_deltas
            SELECT OLD.tenant_id, parley_utc_day(OLD.started_at), COALESCE(OLD.agent_id, ''), i, -1
            FROM unnest(OLD.intents) AS i;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO call_rollup_deltas VALUES (NEW.tenant_id, parley_utc_day(NEW.started_at),
            COALESCE(NEW.agent_id, ''), COALESCE(NEW.disposition, ''), 1,
            COALESCE(NEW.duration_ms, 0));
        INSERT INTO intent_rollup_deltas
            SELECT NEW.tenant_id, parley_utc_day(NEW.started_at), COALESCE(NEW.agent_id, ''), i, 1
            FROM unnest(NEW.intents) AS i;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER calls_rollup AFTER INSERT OR UPDATE OR DELETE ON calls
    FOR EACH ROW EXECUTE FUNCTION parley_calls_rollup();

CREATE FUNCTION parley_latency_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.voice_to_voice_ms IS NOT DISTINCT FROM NEW.voice_to_voice_ms THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.voice_to_voice_ms IS NOT NULL THEN
        INSERT INTO latency_rollup_deltas
            SELECT c.tenant_id, parley_utc_day(c.started_at), COALESCE(c.agent_id, ''),
                   parley_latency_bucket(OLD.voice_to_voice_ms), -1
            FROM calls c WHERE c.call_id = OLD.call_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.voice_to_voice_ms IS NOT NULL THEN
        INSERT INTO latency_rollup_deltas
            SELECT c.tenant_id, parley_utc_day(c.started_at), COALESCE(c.agent_id, ''),
                   parley_latency_bucket(NEW.voice_to_voice_ms), 1
            FROM calls c WHERE c.call_id = NEW.call_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER call_latency_rollup AFTER INSERT OR UPDATE OR DELETE ON call_latency
    FOR EACH ROW EXECUTE FUNCTION parley_latency_rollup();

-- Fold deltas into the daily tables; one compactor at a time (others return at once).
CREATE FUNCTION parley_compact_rollups() RETURNS boolean LANGUAGE plpgsql AS $$
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
CREATE FUNCTION parley_rebuild_rollups() RETURNS void LANGUAGE plpgsql AS $$
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
