-- Outbound campaigns: contacts to call in their local calling window, one row per dial attempt
-- (the claim that makes a retried or redelivered dial task place no second call), the tenant's
-- do-not-call list and its campaign-wide call limits.
-- depends: 0242_lost_calls

CREATE TABLE campaigns (
    campaign_id       text PRIMARY KEY,
    tenant_id         text NOT NULL REFERENCES tenants (tenant_id),
    agent_id          text NOT NULL,
    name              text NOT NULL,
    from_number       text NOT NULL,
    status            text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'running', 'paused', 'canceled', 'completed')),
    window_start      time NOT NULL,
    window_end        time NOT NULL,
    window_days       smallint[] NOT NULL,       -- ISO weekdays, 1 = Monday
    default_timezone  text,                      -- for numbers whose timezone is ambiguous
    max_concurrency   integer NOT NULL CHECK (max_concurrency > 0),
    calls_per_second  real NOT NULL CHECK (calls_per_second > 0),
    retry_policy      jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, created_at DESC);
CREATE INDEX campaigns_running ON campaigns (status) WHERE status = 'running';

CREATE TABLE campaign_contacts (
    contact_id       text PRIMARY KEY,
    campaign_id      text NOT NULL REFERENCES campaigns (campaign_id),
    tenant_id        text NOT NULL,
    number           text NOT NULL,
    timezone         text NOT NULL,
    variables        jsonb NOT NULL DEFAULT '{}',
    -- pending: never dialled; queued/dialing/in_call: an attempt is out; waiting_retry: the
    -- retry policy asked for another attempt at next_attempt_at; done, skipped (DNC), canceled.
    state            text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'queued', 'in_call', 'waiting_retry', 'done', 'skipped',
                         'canceled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_outcome     text,
    disposition      text,
    UNIQUE (campaign_id, number)
);
CREATE INDEX campaign_contacts_due ON campaign_contacts (campaign_id, state, next_attempt_at);

CREATE TABLE campaign_attempts (
    attempt_id       text PRIMARY KEY,
    campaign_id      text NOT NULL REFERENCES campaigns (campaign_id),
    contact_id       text NOT NULL REFERENCES campaign_contacts (contact_id),
    tenant_id        text NOT NULL,
    attempt_no       integer NOT NULL,
    -- queued: a dial task is on its way; dialing: a worker claimed it (from here on no worker
    -- dials it again, whatever happens to this one); placed: Twilio took the call; finished.
    state            text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'dialing', 'placed', 'finished')),
    call_sid         text UNIQUE,
    answered_by      text,
    outcome          text,
    error            text,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    dial_started_at  timestamptz,
    finished_at      timestamptz,
    UNIQUE (contact_id, attempt_no)
);
CREATE INDEX campaign_attempts_open ON campaign_attempts (tenant_id, campaign_id)
    WHERE state <> 'finished';

CREATE TABLE dnc_numbers (
    tenant_id  text NOT NULL REFERENCES tenants (tenant_id),
    number     text NOT NULL,
    source     text NOT NULL,                   -- api, csv, caller (asked during a call)
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, number)
);

CREATE TABLE tenant_call_limits (
    tenant_id             text PRIMARY KEY REFERENCES tenants (tenant_id),
    max_concurrent_calls  integer NOT NULL CHECK (max_concurrent_calls > 0)
);

-- A call that ends with the disposition do_not_call (the person said "stop calling me") puts
-- the other party's number on the tenant's list, however the disposition arrived (the event
-- projection, an API): one place, so no path can forget it.
CREATE FUNCTION parley_caller_opt_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dnc_numbers (tenant_id, number, source)
    SELECT NEW.tenant_id,
           CASE WHEN NEW.direction LIKE 'outbound%' THEN NEW.to_number ELSE NEW.from_number END,
           'caller'
    WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.tenant_id = NEW.tenant_id)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER calls_opt_out AFTER INSERT OR UPDATE OF disposition ON calls
    FOR EACH ROW WHEN (NEW.disposition = 'do_not_call') EXECUTE FUNCTION parley_caller_opt_out();
