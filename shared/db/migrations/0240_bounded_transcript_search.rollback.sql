-- Undo 0240_bounded_transcript_search.
-- depends: 0102_calls_transcript_search
CREATE OR REPLACE FUNCTION parley_call_transcript(call text) RETURNS tsvector
    LANGUAGE sql STABLE AS $$
    SELECT to_tsvector('english', COALESCE(string_agg(text, ' ' ORDER BY start_ms, turn_index), ''))
    FROM call_turns WHERE call_id = call
$$;
