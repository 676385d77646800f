"""Pydantic models of Parley's events.

An :class:`Event` is an envelope (id, type, schema version, tenant, call, per-call sequence number,
time) around one payload. The ``type`` field selects the payload model, so a consumer gets a typed
payload back from :func:`parse_event`. The JSON Schemas in ``events/schemas/`` are generated from
these models (``parley events schemas``) and a test fails when they drift.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1

# A caller's or the agent's turn holds at most this many characters (the media node cuts a
# longer one and counts it; the schema refuses it, so the consumer sets it aside).
TURN_TEXT_MAX_CHARS = 10_000
# The transcript search column covers the first this-many characters of a call's transcript
# (migration 0240_bounded_transcript_search); the turns themselves are kept whole.
TRANSCRIPT_SEARCH_MAX_CHARS = 100_000

# What a tool call's failure is called at most (its kind, never its URL or body).
TOOL_ERROR_MAX_CHARS = 80

Speaker = Literal["caller", "agent"]
IntentSource = Literal["classifier", "llm", "dtmf", "rule"]
EscalationReason = Literal[
    "explicit_request", "failed_attempts", "no_input", "llm_failure", "tool_failure", "other"
]


class EventError(ValueError):
    """An event could not be parsed or validated; the message says which field and why."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CallStarted(_Payload):
    type: Literal["call.started"] = "call.started"
    agent_id: str
    agent_version: int | None = None
    channel: Literal["twilio", "webrtc", "simulator"] = "twilio"
    from_number: str = ""
    to_number: str = ""
    twilio_call_sid: str | None = None
    stream_sid: str | None = None
    node_id: str | None = None


class CallEnded(_Payload):
    type: Literal["call.ended"] = "call.ended"
    reason: str = Field(description="Why the call ended: hangup, transfer, agent_end, error, ...")
    duration_ms: int = Field(ge=0)
    recording_url: str | None = None
    llm_tokens: int | None = Field(
        None, ge=0, description="Prompt and completion tokens the call's LLM turns used."
    )


class TurnUser(_Payload):
    type: Literal["turn.user"] = "turn.user"
    turn_index: int = Field(ge=0)
    text: str = Field(max_length=TURN_TEXT_MAX_CHARS)
    start_ms: int = Field(ge=0, description="Offset of the turn from the start of the call.")
    end_ms: int = Field(ge=0)
    confidence: float | None = Field(None, ge=0, le=1)
    source: Literal["speech", "dtmf", "text"] = "speech"
    redacted: bool = False


class TurnAgent(_Payload):
    type: Literal["turn.agent"] = "turn.agent"
    turn_index: int = Field(ge=0)
    text: str = Field(
        max_length=TURN_TEXT_MAX_CHARS,
        description="What the caller actually heard (cut at barge-in).",
    )
    planned_text: str | None = Field(
        None, max_length=TURN_TEXT_MAX_CHARS, description="Full text before any barge-in cut."
    )
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)
    interrupted: bool = False
    state: str | None = None


class IntentDetected(_Payload):
    type: Literal["intent.detected"] = "intent.detected"
    turn_index: int = Field(ge=0)
    intent: str
    confidence: float = Field(ge=0, le=1)
    source: IntentSource = "classifier"


class SlotFilled(_Payload):
    type: Literal["slot.filled"] = "slot.filled"
    turn_index: int = Field(ge=0)
    name: str
    value: Any
    slot_type: str


class DispositionSet(_Payload):
    type: Literal["disposition.set"] = "disposition.set"
    disposition: str
    summary: str = ""
    slots: dict[str, Any] = Field(default_factory=dict)


class EscalationRequested(_Payload):
    type: Literal["escalation.requested"] = "escalation.requested"
    reason: EscalationReason
    target: str | None = Field(None, description="Phone number or SIP URI of the human.")


class ToolCalled(_Payload):
    type: Literal["tool.called"] = "tool.called"
    turn_index: int = Field(ge=0)
    state: str = Field(
        min_length=1, max_length=128, description="The agent state whose http action ran."
    )
    ok: bool
    status: int | None = Field(None, ge=100, le=599, description="The API's HTTP status.")
    elapsed_ms: float = Field(ge=0)
    error: str | None = Field(
        None,
        max_length=TOOL_ERROR_MAX_CHARS,
        description="What failed (no URL or body: they may hold slots).",
    )


class LatencyMeasured(_Payload):
    type: Literal["latency.measured"] = "latency.measured"
    turn_index: int = Field(ge=0)
    endpoint_ms: float | None = Field(None, ge=0)
    asr_ms: float | None = Field(None, ge=0)
    dialogue_first_text_ms: float | None = Field(None, ge=0)
    tts_first_audio_ms: float | None = Field(None, ge=0)
    voice_to_voice_ms: float | None = Field(None, ge=0)


Payload = Annotated[
    CallStarted
    | CallEnded
    | TurnUser
    | TurnAgent
    | IntentDetected
    | SlotFilled
    | DispositionSet
    | EscalationRequested
    | ToolCalled
    | LatencyMeasured,
    Field(discriminator="type"),
]

PAYLOAD_MODELS: tuple[type[_Payload], ...] = (
    CallStarted,
    CallEnded,
    TurnUser,
    TurnAgent,
    IntentDetected,
    SlotFilled,
    DispositionSet,
    EscalationRequested,
    ToolCalled,
    LatencyMeasured,
)
EVENT_TYPES: tuple[str, ...] = tuple(str(m.model_fields["type"].default) for m in PAYLOAD_MODELS)


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """The envelope every event travels in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Idempotency key.")
    type: str = Field(description="Copy of payload.type, for routing without parsing payloads.")
    schema_version: int = Field(SCHEMA_VERSION, ge=1)
    tenant_id: str = Field(min_length=1, max_length=128)
    call_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0, description="Per-call sequence number; orders a call's events.")
    occurred_at: datetime = Field(default_factory=_now)
    payload: Payload

    @model_validator(mode="before")
    @classmethod
    def _type_from_payload(cls, data: Any) -> Any:
        if isinstance(data, dict) and "type" not in data:
            payload = data.get("payload")
            kind = (
                payload.get("type") if isinstance(payload, dict) else getattr(payload, "type", None)
            )
            if kind is not None:
                data = {**data, "type": kind}
        return data

    @model_validator(mode="after")
    def _type_matches_payload(self) -> Event:
        if self.type != self.payload.type:
            raise ValueError(
                f"type '{self.type}' does not match payload type '{self.payload.type}'"
            )
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must carry a timezone")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def parse_event(data: bytes | str | dict[str, Any]) -> Event:
    """Validate raw JSON (or a dict) into an :class:`Event`, or raise :class:`EventError`."""
    try:
        if isinstance(data, dict):
            return Event.model_validate(data)
        return Event.model_validate_json(data)
    except ValidationError as exc:
        problems = [
            f"at {'.'.join(str(p) for p in error['loc']) or 'event'}: {error['msg']}"
            for error in exc.errors()[:3]
        ]
        raise EventError("invalid event " + "; ".join(problems)) from None
