-- Undo 0241_dead_letters.
-- depends: 0240_bounded_transcript_search
DROP TABLE IF EXISTS dead_letters;
