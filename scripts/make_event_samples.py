"""Writes events/samples/call-events/: one sample of every event type, from one simulated call.

Run: .venv/bin/python scripts/make_event_samples.py
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.events import (
    CallEnded,
    CallStarted,
    DispositionSet,
    EscalationRequested,
    Event,
    IntentDetected,
    LatencyMeasured,
    SlotFilled,
    ToolCalled,
    TurnAgent,
    TurnUser,
)

OUT = Path(__file__).resolve().parents[1] / "events" / "samples" / "call-events"
START = datetime(2026, 11, 28, 15, 0, 0, tzinfo=UTC)

PAYLOADS: list[Any] = [
    CallStarted(
        agent_id="acme-shop",
        agent_version=1,
        channel="twilio",
        from_number="+15551230001",
        to_number="+15559870000",
        twilio_call_sid="CA0123456789abcdef0123456789abcdef",
        stream_sid="MZ0123456789abcdef0123456789abcdef",
        node_id="media-0",
    ),
    TurnAgent(
        turn_index=0,
        text="Hi, thanks for calling Acme. How can I help?",
        start_ms=120,
        end_ms=2900,
        state="main_menu",
    ),
    TurnUser(
        turn_index=0,
        text="I want to know where my order is",
        start_ms=3400,
        end_ms=5200,
        confidence=0.93,
    ),
    IntentDetected(turn_index=0, intent="order_status", confidence=0.88, source="classifier"),
    LatencyMeasured(
        turn_index=0,
        endpoint_ms=400,
        asr_ms=95,
        dialogue_first_text_ms=6,
        tts_first_audio_ms=70,
        voice_to_voice_ms=430,
    ),
    SlotFilled(turn_index=1, name="order_number", value="4567", slot_type="digits"),
    ToolCalled(turn_index=1, state="lookup_order", ok=True, status=200, elapsed_ms=84.5),
    EscalationRequested(reason="explicit_request", target="+15550100200"),
    DispositionSet(
        disposition="escalated_to_human",
        summary="Caller asked about order 4567, then a human.",
        slots={"order_number": "4567"},
    ),
    CallEnded(reason="transferred", duration_ms=41_000),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    namespace = uuid.UUID("6f1c2f4e-8a59-4a53-9a59-2d7bbbd0c0de")
    for seq, payload in enumerate(PAYLOADS):
        event = Event(
            event_id=uuid.uuid5(namespace, str(seq)),
            tenant_id="tenant-demo",
            call_id="call-sample-1",
            seq=seq,
            occurred_at=START + timedelta(seconds=seq * 3),
            payload=payload,
        )
        path = OUT / f"{seq:02d}-{event.type.replace('.', '-')}.json"
        path.write_text(event.model_dump_json(indent=2) + "\n")
        print(f"wrote {path.relative_to(OUT.parents[2])}")


if __name__ == "__main__":
    main()
