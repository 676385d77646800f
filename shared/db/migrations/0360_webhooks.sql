-- Outcome webhooks: a tenant's subscriptions, one delivery row per (subscription, source event)
-- written by the event consumer in the transaction that projects the event (so a replayed batch
-- adds none), and every attempt to POST it, kept as the delivery log.
-- depends: 0340_call_outcomes

CREATE TABLE webhook_subscriptions (
    subscription_id text PRIMARY KEY,
    tenant_id       text NOT NULL,
    url             text NOT NULL,
    events          text[] NOT NULL,           -- names or family patterns ('transfer.*')
    secret          text NOT NULL,             -- the HMAC key; shown once, at creation
    description     text NOT NULL DEFAULT '',
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant_id)
    WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    delivery_id     text PRIMARY KEY,          -- the receiver's idempotency key
    tenant_id       text NOT NULL,
    subscription_id text NOT NULL REFERENCES webhook_subscriptions,
    event_type      text NOT NULL,
    source_id       text NOT NULL,             -- what made it: an event id (+ suffix), a row id
    call_id         text,                      -- deleted with the call
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead', 'canceled')),
    attempts        integer NOT NULL DEFAULT 0, -- attempts since created or last redelivered
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_token     text,                      -- the one task allowed to POST it now
    leased_until    timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (subscription_id, source_id)
);
-- The sweep reads what is due; the API lists a subscription's or a tenant's newest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, created_at DESC);
CREATE INDEX webhook_deliveries_call ON webhook_deliveries (call_id) WHERE call_id IS NOT NULL;

CREATE TABLE webhook_attempts (
    delivery_id     text NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    attempt         integer NOT NULL,          -- 1, 2, ... over the delivery's whole life
    started_at      timestamptz NOT NULL,
    duration_ms     integer NOT NULL,
    status_code     integer,                   -- null: no HTTP answer (refused, timeout)
    error           text,
    PRIMARY KEY (delivery_id, attempt)
);
