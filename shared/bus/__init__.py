"""The event bus: one async interface, Kafka in production, in-process for the demo."""

from shared.bus.base import BusError, BusUnavailable, EventBus, EventConsumer, ReceivedRecord
from shared.bus.factory import create_bus
from shared.bus.memory import InProcessBus
from shared.bus.topics import call_events_topic, dead_letter_topic

__all__ = [
    "BusError",
    "BusUnavailable",
    "EventBus",
    "EventConsumer",
    "InProcessBus",
    "ReceivedRecord",
    "call_events_topic",
    "create_bus",
    "dead_letter_topic",
]
