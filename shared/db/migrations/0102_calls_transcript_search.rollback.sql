-- Undo 0102_calls_transcript_search.
-- depends: 0101_calls_duration_order
DROP TRIGGER IF EXISTS call_turns_transcript ON call_turns;
DROP FUNCTION IF EXISTS parley_turns_transcript();
DROP FUNCTION IF EXISTS parley_call_transcript(text);
DROP INDEX IF EXISTS calls_transcript;
ALTER TABLE calls DROP COLUMN IF EXISTS transcript;
