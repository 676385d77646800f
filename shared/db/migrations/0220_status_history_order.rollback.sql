-- Undo 0220_status_history_order.
-- depends: 0102_calls_transcript_search
ALTER TABLE call_status_events DROP COLUMN IF EXISTS in_history;
ALTER TABLE call_status_events DROP COLUMN IF EXISTS status_rank;
