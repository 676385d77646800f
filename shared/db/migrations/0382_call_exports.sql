-- Export jobs (POST /v1/exports): the filters they run, the job worker that holds one (a lease,
-- so one whose worker died is taken over), and where the finished file lies until it expires.
-- depends: 0380_call_metadata

CREATE TABLE call_exports (
    export_id    text PRIMARY KEY,
    tenant_id    text NOT NULL,
    key_id       text NOT NULL,                 -- the API key that asked (the audit of reads)
    format       text NOT NULL CHECK (format IN ('csv', 'jsonl')),
    filters      jsonb NOT NULL,                -- the call filters' parameters, as given
    base_url     text NOT NULL,                 -- the API's public URL (recording links)
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'ready', 'failed', 'expired')),
    attempts     integer NOT NULL DEFAULT 0,
    leased_until timestamptz,
    location     text,                          -- s3://bucket/key or file:///path
    rows         bigint,
    bytes        bigint,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    expires_at   timestamptz
);
CREATE INDEX call_exports_tenant ON call_exports (tenant_id, created_at DESC);
-- The sweep: jobs not yet done, and files to delete.
CREATE INDEX call_exports_open ON call_exports (created_at)
    WHERE status IN ('pending', 'running', 'ready');
