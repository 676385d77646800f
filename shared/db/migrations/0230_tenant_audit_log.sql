-- Who changed a tenant's settings, and how: an append-only record of admin actions (turning PII
-- redaction off above all), written in the same transaction as the change.
-- depends: 0102_calls_transcript_search

CREATE TABLE tenant_audit_log (
    entry_id bigserial PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    key_id text NOT NULL,
    action text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_audit_log_tenant ON tenant_audit_log (tenant_id, at);
