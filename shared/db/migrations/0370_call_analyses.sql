-- Post-call analysis: a summary, success against the agent's rubric, the caller's sentiment and
-- the fields extracted to the agent's JSON schema. Append-only: a re-run adds the next version
-- of the call, so what an earlier analysis said stays readable; the latest version is served.
-- Requests are the job workers' queue (as webhook_deliveries are): the consumer adds one when a
-- call ends, POST /v1/calls/{id}/analysis adds one for a re-run; a worker leases it, analyses the
-- call and stores the version and the request's completion in one transaction.
-- depends: 0363_call_aggregate_rollup

CREATE TABLE call_analysis_requests (
    request_id     text PRIMARY KEY,
    call_id        text NOT NULL REFERENCES calls ON DELETE CASCADE,
    tenant_id      text NOT NULL,
    reason         text NOT NULL CHECK (reason IN ('ended', 'rerun')),
    requested_at   timestamptz NOT NULL DEFAULT now(),
    leased_until   timestamptz,
    lease_token    text,
    attempts       integer NOT NULL DEFAULT 0,
    done_at        timestamptz,
    version        integer,
    error          text
);
-- The sweep reads only what is still to do.
CREATE INDEX call_analysis_requests_pending ON call_analysis_requests (requested_at)
    WHERE done_at IS NULL;
CREATE INDEX call_analysis_requests_call ON call_analysis_requests (call_id);
-- The consumer adds the 'ended' request once per call, however often the event is replayed.
CREATE UNIQUE INDEX call_analysis_requests_ended ON call_analysis_requests (call_id)
    WHERE reason = 'ended';

CREATE TABLE call_analyses (
    call_id           text NOT NULL REFERENCES calls ON DELETE CASCADE,
    version           integer NOT NULL CHECK (version >= 1),
    tenant_id         text NOT NULL,
    request_id        text NOT NULL,
    agent_id          text,
    agent_version     integer,
    method            text NOT NULL CHECK (method IN ('llm', 'local')),
    model             text NOT NULL,
    summary           text NOT NULL,
    success           boolean,
    -- Every analysis says why it judged success so, and how the caller sounded (the local
    -- model always can): the API serves these as required fields.
    success_reason    text NOT NULL,
    sentiment         text NOT NULL CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    sentiment_score   real NOT NULL,
    extracted         jsonb NOT NULL DEFAULT '{}'::jsonb,
    extraction_valid  boolean,
    extraction_errors text[] NOT NULL DEFAULT ARRAY[]::text[],
    failures          jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, version)
);
CREATE UNIQUE INDEX call_analyses_request ON call_analyses (request_id);
-- The filters read the latest version of each call.
CREATE INDEX call_analyses_latest ON call_analyses (call_id, version DESC)
    INCLUDE (sentiment, success);
CREATE INDEX call_analyses_tenant ON call_analyses (tenant_id, created_at DESC);

-- Append-only: a version once stored is never changed (a re-run adds the next one).
CREATE FUNCTION call_analyses_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'call_analyses is append-only: add a version instead';
END $$;
CREATE TRIGGER call_analyses_no_update BEFORE UPDATE ON call_analyses
    FOR EACH ROW EXECUTE FUNCTION call_analyses_append_only();
