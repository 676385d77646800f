-- GET /v1/calls?sort=duration_ms: keyset pages in duration order without sorting the tenant.
-- depends: 0100_functions_api

CREATE INDEX calls_tenant_duration ON calls (tenant_id, (COALESCE(duration_ms, 0)), call_id);
