"""Topic names. All of a call's events share one topic keyed by call id, so one partition holds a
call's whole story in order; consumers route on the envelope's ``type``."""

from __future__ import annotations


def call_events_topic(prefix: str) -> str:
    return f"{prefix}.call-events"


def dead_letter_topic(prefix: str) -> str:
    return f"{prefix}.call-events.dlq"
