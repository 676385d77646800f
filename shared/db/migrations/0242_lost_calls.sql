-- Calls whose media node died: lost_at marks the closing the sweeper made (end_reason
-- 'media_node_lost' or 'events_stopped'), so late events from the node's spool are stored but
-- never reopen or override it. The partial index finds the open calls cheaply.
-- depends: 0241_dead_letters

ALTER TABLE calls ADD COLUMN lost_at timestamptz;
CREATE INDEX calls_open ON calls (node_id) WHERE end_reason IS NULL AND lost_at IS NULL;
