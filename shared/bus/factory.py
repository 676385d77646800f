"""Pick the bus from settings: Kafka behind the durable spool when bootstrap servers are
configured, else the in-process bus."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.bus.base import EventBus
from shared.bus.memory import InProcessBus
from shared.settings import Settings

if TYPE_CHECKING:  # importing durable at run time pulls in aiokafka
    from prometheus_client import CollectorRegistry

    from shared.bus.durable import Redactor


def create_bus(
    settings: Settings,
    *,
    redact: Redactor | None = None,
    registry: CollectorRegistry | None = None,
) -> EventBus:
    """The producer side: publishes never block a call (see shared/bus/durable.py). The durable
    bus's spool series go on ``registry``, the process's (shared/metrics.py)."""
    if settings.kafka_bootstrap:
        from shared.bus.durable import durable_bus_from_settings

        return durable_bus_from_settings(settings, redact=redact, registry=registry)
    return InProcessBus(settings.kafka_topic_prefix)
