"""Redact the text-bearing fields of an event; other fields (ids, timings) stay as they are."""

from __future__ import annotations

from typing import Any

from shared.events import DispositionSet, Event, SlotFilled, TurnAgent, TurnUser
from shared.privacy.redact import CARD, EMAIL, PHONE, SSN, redact_text

# Slots whose whole value is PII whatever it looks like (a partial card, a spelled email).
_PII_SLOT_TYPES = {
    "credit_card": CARD,
    "card": CARD,
    "card_number": CARD,
    "ssn": SSN,
    "email": EMAIL,
    "phone": PHONE,
    "phone_number": PHONE,
}


def _text(value: str) -> str:
    return redact_text(value).text


def _value(value: Any) -> Any:
    """Strings anywhere inside a slot value (lists, dicts) are redacted."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**6:
        # A number long enough to be a card, SSN or phone number travels as text.
        masked = _text(str(value))
        return value if masked == str(value) else masked
    return value


def redact_event(event: Event) -> Event:
    """The event with PII masked in transcripts, slot values and summaries."""
    p = event.payload
    match p:
        case TurnUser():
            new: Any = p.model_copy(update={"text": _text(p.text), "redacted": True})
        case TurnAgent():
            planned = None if p.planned_text is None else _text(p.planned_text)
            new = p.model_copy(update={"text": _text(p.text), "planned_text": planned})
        case SlotFilled():
            label = _PII_SLOT_TYPES.get(p.slot_type.lower())
            new = p.model_copy(update={"value": label if label else _value(p.value)})
        case DispositionSet():
            new = p.model_copy(update={"summary": _text(p.summary), "slots": _value(p.slots)})
        case _:
            return event
    return event.model_copy(update={"payload": new})
