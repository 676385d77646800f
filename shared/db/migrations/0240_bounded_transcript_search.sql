-- The search column covers a call's transcript up to its first 100,000 characters: a tsvector
-- holds at most 1 MB, and a call whose transcript would exceed it must still be stored (every
-- turn stays in call_turns whole; only the search document is cut). 100,000 characters stay well
-- under the tsvector limit whatever the words and script. Keep in step with
-- TRANSCRIPT_SEARCH_MAX_CHARS in shared/events/models.py.
-- depends: 0102_calls_transcript_search

CREATE OR REPLACE FUNCTION parley_call_transcript(call text) RETURNS tsvector
    LANGUAGE sql STABLE AS $$
    SELECT to_tsvector('english',
        left(COALESCE(string_agg(text, ' ' ORDER BY start_ms, turn_index), ''), 100000))
    FROM call_turns WHERE call_id = call
$$;
