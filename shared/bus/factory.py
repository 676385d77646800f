"""Pick the bus from settings: Kafka when bootstrap servers are configured, else in-process."""

from __future__ import annotations

from shared.bus.base import EventBus
from shared.bus.memory import InProcessBus
from shared.settings import Settings


def create_bus(settings: Settings) -> EventBus:
    if settings.kafka_bootstrap:
        from shared.bus.kafka import KafkaBus

        return KafkaBus(
            settings.kafka_bootstrap,
            topic_prefix=settings.kafka_topic_prefix,
            security_protocol=settings.kafka_security_protocol,
        )
    return InProcessBus(settings.kafka_topic_prefix)
