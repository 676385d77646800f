-- Undo 0242_lost_calls.
-- depends: 0241_dead_letters
DROP INDEX IF EXISTS calls_open;
ALTER TABLE calls DROP COLUMN IF EXISTS lost_at;
