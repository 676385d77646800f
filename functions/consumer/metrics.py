"""Prometheus metrics of the long-running consumer (the Lambda reports to CloudWatch instead)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ConsumerMetrics:
    """The consumer's series on the process's registry (shared/metrics.py)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.lag = Gauge(
            "parley_consumer_lag",
            "Records in the partition after the consumer's position (high watermark - position).",
            ["topic", "partition"],
            registry=registry,
        )
        self.applied = Counter(
            "parley_consumer_events_applied",
            "Events newly applied to the database.",
            registry=registry,
        )
        self.duplicates = Counter(
            "parley_consumer_events_duplicate",
            "Redelivered events skipped because already applied.",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "parley_consumer_events_dead_lettered",
            "Events sent to the dead-letter topic.",
            ["reason"],
            registry=registry,
        )
