"""Response bodies of the analytics API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Cost(BaseModel):
    amount: float = Field(description="At the tenant's prices (settings.prices).")
    currency: str


class Usage(BaseModel):
    minutes: float = Field(description="Call duration in minutes (not rounded up).")
    asr_seconds: float = Field(description="Caller speech the recogniser heard.")
    tts_chars: int = Field(description="Characters the agent spoke.")
    llm_tokens: int = Field(description="LLM tokens the call's turns used.")
    cost: Cost | None = None


class CallSummary(BaseModel):
    call_id: str
    agent_id: str | None
    agent_version: int | None
    channel: str
    direction: str
    from_number: str
    to_number: str
    status: str
    disposition: str | None
    intents: list[str]
    primary_intent: str | None = Field(description="The first intent the caller showed.")
    escalation_reason: str | None = Field(description="Why the call was handed to a human.")
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    duration_ms: int | None
    end_reason: str | None
    voice_to_voice_p50_ms: float | None = Field(
        description="The call's median voice-to-voice latency."
    )
    summary: str | None
    metadata: dict[str, str] = Field(
        description="What the API client attached when it placed the call (POST /v1/calls/"
        "outbound); {} for others."
    )
    usage: Usage
    sentiment: Literal["positive", "neutral", "negative"] | None = Field(
        None, description="The caller's sentiment in the latest analysis; null: none yet."
    )
    success: bool | None = Field(
        None, description="The latest analysis' verdict; null: no analysis, or no verdict."
    )


class CallPage(BaseModel):
    items: list[CallSummary]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


class Turn(BaseModel):
    speaker: str
    turn_index: int
    text: str
    start_ms: int
    end_ms: int
    confidence: float | None
    source: str | None
    interrupted: bool
    state: str | None


class IntentHit(BaseModel):
    turn_index: int
    intent: str
    confidence: float
    source: str


class LatencyTurn(BaseModel):
    turn_index: int
    endpoint_ms: float | None
    asr_ms: float | None
    dialogue_first_text_ms: float | None
    tts_first_audio_ms: float | None
    voice_to_voice_ms: float | None


class StatusChange(BaseModel):
    status: str
    sequence_number: int | None
    callback_at: datetime | None
    received_at: datetime


class AnalysisFailure(BaseModel):
    part: str = Field(description="summary, verdict (success and sentiment) or extraction.")
    kind: str = Field(
        description="timeout, error, invalid, guardrail (the LLM) or schema (the fields broke "
        "the agent's extraction schema)."
    )
    detail: str
    used: str = Field(description="What the analysis used instead.")
    source: str | None = Field(None, description="extraction: where the fields came from.")
    value: str | None = Field(None, description="extraction: the refused fields, as JSON.")


class CallAnalysis(BaseModel):
    version: int = Field(description="1 for the analysis made when the call ended; +1 a re-run.")
    request_id: str
    agent_id: str | None
    agent_version: int | None
    method: Literal["llm", "local"] = Field(
        description="llm: the configured LLM; local: the template summary, the local model "
        "(MiniLM) for success and sentiment, the slots for extraction."
    )
    model: str
    summary: str
    success: bool | None = Field(description="Against the agent's rubric; null: nothing said.")
    success_reason: str
    sentiment: Literal["positive", "neutral", "negative"]
    sentiment_score: float = Field(description="-1 (negative) to 1 (positive).")
    extracted: dict[str, Any] = Field(
        description="The fields of the agent's extraction schema; empty when none matched it."
    )
    extraction_valid: bool | None = Field(
        description="The fields matched the schema; null: the agent declares no schema."
    )
    extraction_errors: list[str]
    failures: list[AnalysisFailure] = Field(
        description="Parts that fell back or were refused (an LLM timeout, fields off-schema)."
    )
    created_at: datetime


class AnalysisRequest(BaseModel):
    request_id: str
    reason: Literal["ended", "rerun"]
    requested_at: datetime
    attempts: int
    error: str | None = Field(description="Why the last try failed (given up when done_at).")
    done_at: datetime | None


class CallAnalysisState(BaseModel):
    call_id: str
    status: Literal["analyzed", "pending", "failed", "none"] = Field(
        description="analyzed: 'analysis' is the latest (a re-run may be pending too); pending: "
        "the first is being made; failed: it was given up ('request.error'); none: never asked."
    )
    analysis: CallAnalysis | None
    versions: list[int]
    request: AnalysisRequest | None = Field(
        description="The latest request when no analysis came of it yet."
    )


class AnalysisQueued(BaseModel):
    call_id: str
    request_id: str
    status: Literal["queued"] = "queued"


class CallDetail(CallSummary):
    twilio_call_sid: str | None
    node_id: str | None = Field(description="The media node that handled the call.")
    slots: dict[str, Any]
    turns: list[Turn]
    intent_hits: list[IntentHit]
    latency: list[LatencyTurn]
    status_history: list[StatusChange]
    recording_url: str | None = Field(
        description="A pre-signed URL when stored in S3, else this API's /recording route."
    )
    analysis: CallAnalysis | None = Field(
        None, description="The latest post-call analysis; null until one is stored."
    )


class CountRate(BaseModel):
    name: str = Field(description="The disposition or intent ('none': not set yet).")
    count: int
    rate: float = Field(description="count / calls in the group.")


class SummaryGroup(BaseModel):
    key: str = Field(description="The day or week (YYYY-MM-DD, UTC) or the agent id.")
    calls: int
    items: list[CountRate]


class Summary(BaseModel):
    start: date
    end: date
    group_by: str
    groups: list[SummaryGroup]


class AgentLatency(BaseModel):
    agent_id: str
    turns: int
    p50_ms: float
    p95_ms: float


class LatencySummary(BaseModel):
    start: date
    end: date
    resolution: str = Field(
        "1.25%", description="Percentiles come from a histogram with buckets 2.5% wide."
    )
    agents: list[AgentLatency]


class Stats(BaseModel):
    avg: float | None
    p50: float | None
    p95: float | None


class AggregateGroup(BaseModel):
    key: dict[str, Any] = Field(
        description="The group's value of each group_by key (null: not set); a subtotal row "
        "leaves out the keys it adds up."
    )
    subtotal: bool = False
    calls: int
    share: float = Field(description="calls / every matching call.")
    rate: float = Field(
        description="calls / the calls with the same first key (e.g. the agent's) when grouped "
        "by two or more keys; else the same as share."
    )
    duration_ms: Stats
    latency_ms: Stats = Field(description="Over the calls' median voice-to-voice latencies.")
    usage: Usage = Field(description="Summed over the group's calls, with its cost.")


class Aggregate(BaseModel):
    group_by: list[str]
    timezone: str = Field(description="The tenant's time zone: days and weeks are its own.")
    started_after: datetime | None
    started_before: datetime | None
    total_calls: int
    percentiles: Literal["exact", "histogram"] = Field(
        description="exact: p50/p95 over the calls rows; histogram: read from the aggregate "
        "rollup's 10%-wide buckets (within 5% of the exact value for durations of 1 s to 2.6 h "
        "and latencies of 100 ms to 9.7 s). Counts, sums and averages are exact either way."
    )
    groups: list[AggregateGroup]
