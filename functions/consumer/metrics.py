"""Prometheus metrics of the long-running consumer (the Lambda reports to CloudWatch instead)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONSUMER_LAG = Gauge(
    "parley_consumer_lag",
    "Records in the partition after the consumer's position (high watermark - position).",
    ["topic", "partition"],
)
EVENTS_APPLIED = Counter("parley_consumer_events_applied", "Events newly applied to the database.")
EVENTS_DUPLICATE = Counter(
    "parley_consumer_events_duplicate", "Redelivered events skipped because already applied."
)
EVENTS_DEAD = Counter(
    "parley_consumer_events_dead_lettered", "Events sent to the dead-letter topic.", ["reason"]
)
