-- One row per dead letter, keyed by where the record came from: every consumer group of this
-- database claims a source record here before publishing it to the dead-letter topic, so the
-- topic gets it once however many groups read the stream (and the reason can be queried).
-- depends: 0240_bounded_transcript_search

CREATE TABLE dead_letters (
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    kind             text NOT NULL,          -- 'invalid' or 'rejected'
    reason           text NOT NULL,
    group_id         text NOT NULL,          -- the group that claimed (and publishes) it
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,            -- acknowledged by the dead-letter topic
    PRIMARY KEY (source_topic, source_partition, source_offset)
);
