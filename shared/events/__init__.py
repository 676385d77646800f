"""Event contracts: one envelope, typed payloads. Every turn of every call becomes events."""

from shared.events.models import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    TRANSCRIPT_SEARCH_MAX_CHARS,
    TURN_TEXT_MAX_CHARS,
    CallEnded,
    CallStarted,
    DispositionSet,
    EscalationRequested,
    Event,
    EventError,
    IntentDetected,
    LatencyMeasured,
    SlotFilled,
    TurnAgent,
    TurnUser,
    parse_event,
)

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "TRANSCRIPT_SEARCH_MAX_CHARS",
    "TURN_TEXT_MAX_CHARS",
    "CallEnded",
    "CallStarted",
    "DispositionSet",
    "EscalationRequested",
    "Event",
    "EventError",
    "IntentDetected",
    "LatencyMeasured",
    "SlotFilled",
    "TurnAgent",
    "TurnUser",
    "parse_event",
]
