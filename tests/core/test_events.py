from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from shared.events import (
    EVENT_TYPES,
    CallStarted,
    Event,
    EventError,
    TurnUser,
    parse_event,
)
from shared.events.schemas import event_schemas, render

ROOT = Path(__file__).resolve().parents[2]


def make_event(**payload_fields: object) -> Event:
    return Event(
        tenant_id="t1",
        call_id="c1",
        seq=3,
        payload=TurnUser(turn_index=0, text="hello", start_ms=0, end_ms=900, **payload_fields),
    )


def test_round_trip_keeps_every_field() -> None:
    event = make_event(confidence=0.8)
    parsed = parse_event(event.to_json())
    assert parsed == event
    assert parsed.type == "turn.user"
    assert isinstance(parsed.payload, TurnUser)


def test_type_is_taken_from_the_payload() -> None:
    event = Event(
        tenant_id="t", call_id="c", seq=0, payload=CallStarted(agent_id="a", channel="twilio")
    )
    assert event.type == "call.started"


def test_every_documented_type_is_modelled() -> None:
    assert set(EVENT_TYPES) == {
        "call.started",
        "call.ended",
        "turn.user",
        "turn.agent",
        "intent.detected",
        "slot.filled",
        "disposition.set",
        "escalation.requested",
        "tool.called",
        "latency.measured",
    }


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"{not json", "event"),
        (json.dumps({"tenant_id": "t", "call_id": "c", "seq": 1}).encode(), "payload"),
        (
            json.dumps(
                {
                    "tenant_id": "t",
                    "call_id": "c",
                    "seq": -1,
                    "event_id": str(uuid.uuid4()),
                    "payload": {"type": "call.ended", "reason": "hangup", "duration_ms": 5},
                }
            ).encode(),
            "seq",
        ),
        (
            json.dumps(
                {
                    "tenant_id": "t",
                    "call_id": "c",
                    "seq": 1,
                    "type": "call.ended",
                    "payload": {"type": "nonsense.type"},
                }
            ).encode(),
            "payload",
        ),
        (
            json.dumps(
                {
                    "tenant_id": "t",
                    "call_id": "c",
                    "seq": 1,
                    "type": "turn.user",
                    "payload": {"type": "call.ended", "reason": "hangup", "duration_ms": 5},
                }
            ).encode(),
            "event",
        ),
    ],
)
def test_malformed_events_get_a_clear_error(raw: bytes, where: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(raw)
    assert f"at {where}" in str(info.value) or where in str(info.value)


def test_unknown_payload_fields_are_rejected() -> None:
    data = json.loads(make_event().to_json())
    data["payload"]["surprise"] = 1
    with pytest.raises(EventError):
        parse_event(data)


def test_committed_schemas_match_the_models() -> None:
    for name, schema in event_schemas().items():
        committed = ROOT / "events" / "schemas" / name
        assert committed.exists(), f"{committed} missing: run `parley events schemas`"
        assert committed.read_text() == render(schema), (
            f"{committed} drifted from shared/events/models.py: run `parley events schemas`"
        )


def test_samples_are_valid_events() -> None:
    samples = sorted((ROOT / "events" / "samples" / "call-events").glob("*.json"))
    assert {parse_event(p.read_bytes()).type for p in samples} == set(EVENT_TYPES)
