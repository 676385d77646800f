-- The visible status history of a call: callbacks in Twilio's own order, without the ones that
-- came late (an `in-progress` or `busy` after `completed`). Every callback is still kept, as
-- received, for audit; `in_history` says whether it is shown.
-- depends: 0102_calls_transcript_search

ALTER TABLE call_status_events
    ADD COLUMN status_rank smallint,
    ADD COLUMN in_history boolean NOT NULL DEFAULT true;

UPDATE call_status_events SET status_rank = CASE status
    WHEN 'queued' THEN 0 WHEN 'initiated' THEN 0 WHEN 'ringing' THEN 1 WHEN 'in-progress' THEN 2
    ELSE 3 END;
