-- GET /v1/calls?q=...: the call's whole transcript as one tsvector on the call row, kept current
-- by a trigger on call_turns, so a search is one indexed predicate instead of a subquery per call.
-- depends: 0101_calls_duration_order

ALTER TABLE calls ADD COLUMN transcript tsvector;
CREATE INDEX calls_transcript ON calls USING gin (transcript);

CREATE FUNCTION parley_call_transcript(call text) RETURNS tsvector
    LANGUAGE sql STABLE AS $$
    SELECT to_tsvector('english', COALESCE(string_agg(text, ' ' ORDER BY start_ms, turn_index), ''))
    FROM call_turns WHERE call_id = call
$$;

CREATE FUNCTION parley_turns_transcript() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target text := CASE WHEN TG_OP = 'DELETE' THEN OLD.call_id ELSE NEW.call_id END;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.text = NEW.text THEN
        RETURN NULL;
    END IF;
    UPDATE calls SET transcript = parley_call_transcript(target) WHERE call_id = target;
    RETURN NULL;
END $$;

CREATE TRIGGER call_turns_transcript AFTER INSERT OR UPDATE OR DELETE ON call_turns
    FOR EACH ROW EXECUTE FUNCTION parley_turns_transcript();

UPDATE calls SET transcript = parley_call_transcript(call_id)
WHERE call_id IN (SELECT DISTINCT call_id FROM call_turns);
