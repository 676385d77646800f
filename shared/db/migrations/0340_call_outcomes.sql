-- What product teams ask of a call: its primary intent, why it was escalated, what it used
-- (speech recognised, characters spoken, LLM tokens: priced per tenant at query time) and its
-- median voice-to-voice latency, kept on the calls row so aggregates over millions of calls read
-- one table. Deleted calls leave a tombstone (no number, no text) so a replayed or late event
-- never brings them back.
-- depends: 0242_lost_calls

ALTER TABLE calls
    ADD COLUMN primary_intent text GENERATED ALWAYS AS (intents[1]) STORED,
    ADD COLUMN escalation_reason text,
    ADD COLUMN asr_audio_ms integer,
    ADD COLUMN tts_chars integer,
    ADD COLUMN llm_tokens integer,
    ADD COLUMN voice_to_voice_p50_ms real,
    ADD COLUMN recording_deleted_at timestamptz;

CREATE TABLE deleted_calls (
    call_id     text PRIMARY KEY,
    tenant_id   text NOT NULL,
    reason      text NOT NULL,             -- 'request', 'caller_request' or 'retention'
    deleted_at  timestamptz NOT NULL DEFAULT now()
);

-- The retention purge walks each tenant's oldest calls; the audit log is read newest first.
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX tenant_audit_log_tenant_entry ON tenant_audit_log (tenant_id, entry_id DESC);
