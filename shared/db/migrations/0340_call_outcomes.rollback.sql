-- Undo 0340_call_outcomes.
-- depends: 0242_lost_calls
DROP INDEX IF EXISTS tenant_audit_log_tenant_entry;
DROP INDEX IF EXISTS calls_started;
DROP TABLE IF EXISTS deleted_calls;
ALTER TABLE calls
    DROP COLUMN IF EXISTS recording_deleted_at,
    DROP COLUMN IF EXISTS voice_to_voice_p50_ms,
    DROP COLUMN IF EXISTS llm_tokens,
    DROP COLUMN IF EXISTS tts_chars,
    DROP COLUMN IF EXISTS asr_audio_ms,
    DROP COLUMN IF EXISTS escalation_reason,
    DROP COLUMN IF EXISTS primary_intent;
