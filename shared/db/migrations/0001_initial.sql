-- Parley's core schema: tenants, keys, agents, numbers, calls, turns, intents, raw events.
-- depends:

CREATE TABLE tenants (
    tenant_id      text PRIMARY KEY,
    name           text NOT NULL,
    settings       jsonb NOT NULL DEFAULT '{}'::jsonb,   -- redaction, recording, overflow number
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id         text PRIMARY KEY,                     -- public prefix shown in listings
    tenant_id      text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    key_hash       text NOT NULL UNIQUE,                 -- sha256 of the secret; never the secret
    scopes         text[] NOT NULL DEFAULT ARRAY['read']::text[],
    name           text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE agents (
    tenant_id      text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    agent_id       text NOT NULL,
    name           text NOT NULL DEFAULT '',
    active_version integer,
    recording      boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id)
);

CREATE TABLE agent_versions (
    tenant_id      text NOT NULL,
    agent_id       text NOT NULL,
    version        integer NOT NULL CHECK (version > 0),
    definition     jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, version),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents ON DELETE CASCADE
);

CREATE TABLE phone_numbers (
    number         text PRIMARY KEY,                     -- E.164
    tenant_id      text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    agent_id       text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents ON DELETE CASCADE
);

CREATE TABLE knowledge_documents (
    document_id    text PRIMARY KEY,
    tenant_id      text NOT NULL,
    agent_id       text NOT NULL,
    title          text NOT NULL,
    content_type   text NOT NULL DEFAULT 'text/plain',
    chunk_count    integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents ON DELETE CASCADE
);

CREATE TABLE calls (
    call_id          text PRIMARY KEY,
    tenant_id        text NOT NULL,
    agent_id         text,
    agent_version    integer,
    channel          text NOT NULL DEFAULT 'twilio',
    direction        text NOT NULL DEFAULT 'inbound',
    twilio_call_sid  text UNIQUE,
    stream_sid       text,
    from_number      text NOT NULL DEFAULT '',
    to_number        text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT 'initiated',
    status_rank      smallint NOT NULL DEFAULT 0,        -- a late status never moves a call back
    started_at       timestamptz NOT NULL DEFAULT now(),
    answered_at      timestamptz,
    ended_at         timestamptz,
    duration_ms      integer,
    end_reason       text,
    disposition      text,
    summary          text,
    slots            jsonb NOT NULL DEFAULT '{}'::jsonb,
    intents          text[] NOT NULL DEFAULT ARRAY[]::text[],
    recording_url    text,
    node_id          text,
    last_seq         integer NOT NULL DEFAULT -1,       -- highest event seq applied
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_tenant_time ON calls (tenant_id, started_at DESC, call_id DESC);
CREATE INDEX calls_tenant_disposition_time ON calls (tenant_id, disposition, started_at DESC);
CREATE INDEX calls_tenant_agent_time ON calls (tenant_id, agent_id, started_at DESC);
CREATE INDEX calls_tenant_status_time ON calls (tenant_id, status, started_at DESC);
CREATE INDEX calls_intents ON calls USING gin (intents);

CREATE TABLE call_turns (
    call_id        text NOT NULL REFERENCES calls ON DELETE CASCADE,
    speaker        text NOT NULL CHECK (speaker IN ('caller', 'agent')),
    turn_index     integer NOT NULL,
    text           text NOT NULL,
    planned_text   text,
    start_ms       integer NOT NULL,
    end_ms         integer NOT NULL,
    confidence     real,
    source         text,
    interrupted    boolean NOT NULL DEFAULT false,
    state          text,
    PRIMARY KEY (call_id, speaker, turn_index)
);
CREATE INDEX call_turns_text ON call_turns USING gin (to_tsvector('english', text));

CREATE TABLE call_intents (
    call_id        text NOT NULL REFERENCES calls ON DELETE CASCADE,
    turn_index     integer NOT NULL,
    intent         text NOT NULL,
    confidence     real NOT NULL,
    source         text NOT NULL,
    PRIMARY KEY (call_id, turn_index, intent)
);
CREATE INDEX call_intents_intent ON call_intents (intent);

CREATE TABLE call_latency (
    call_id                text NOT NULL REFERENCES calls ON DELETE CASCADE,
    turn_index             integer NOT NULL,
    endpoint_ms            real,
    asr_ms                 real,
    dialogue_first_text_ms real,
    tts_first_audio_ms     real,
    voice_to_voice_ms      real,
    PRIMARY KEY (call_id, turn_index)
);

CREATE TABLE call_events (
    event_id       uuid PRIMARY KEY,                     -- idempotency: an event applies once
    call_id        text NOT NULL,
    tenant_id      text NOT NULL,
    seq            integer NOT NULL,
    type           text NOT NULL,
    schema_version integer NOT NULL,
    occurred_at    timestamptz NOT NULL,
    payload        jsonb NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_events_call_seq ON call_events (call_id, seq);
CREATE INDEX call_events_occurred ON call_events (occurred_at);
