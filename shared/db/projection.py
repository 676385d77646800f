"""The projection of call events onto rows: calls, call_turns, call_intents, call_latency.

Idempotent by construction: an event is applied only if its ``event_id`` is new to
``call_events``; call-level facts (status, disposition) only move forward in ``seq`` so a late or
replayed event cannot move a call backwards. Both the media node (embedded mode) and the Kafka
consumer use this one function, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from shared.events import (
    CallEnded,
    CallStarted,
    DispositionSet,
    Event,
    IntentDetected,
    LatencyMeasured,
    SlotFilled,
    TurnAgent,
    TurnUser,
)

# Twilio call statuses in the order a call moves through them; terminal ones share the top rank.
STATUS_RANK = {
    "queued": 0,
    "initiated": 0,
    "ringing": 1,
    "in-progress": 2,
    "completed": 3,
    "busy": 3,
    "no-answer": 3,
    "canceled": 3,
    "failed": 3,
}


async def apply_events(conn: AsyncConnection[Any], events: Iterable[Event]) -> int:
    """Apply events in order inside the current transaction; return how many were new."""
    applied = 0
    for event in events:
        if await _record(conn, event):
            await _project(conn, event)
            applied += 1
    return applied


async def _record(conn: AsyncConnection[Any], event: Event) -> bool:
    await conn.execute(
        "INSERT INTO calls (call_id, tenant_id) VALUES (%s, %s) ON CONFLICT (call_id) DO NOTHING",
        (event.call_id, event.tenant_id),
    )
    cur = await conn.execute(
        """INSERT INTO call_events
               (event_id, call_id, tenant_id, seq, type, schema_version, occurred_at, payload)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (event_id) DO NOTHING""",
        (
            event.event_id,
            event.call_id,
            event.tenant_id,
            event.seq,
            event.type,
            event.schema_version,
            event.occurred_at,
            Jsonb(event.payload.model_dump(mode="json")),
        ),
    )
    return cur.rowcount == 1


async def _project(conn: AsyncConnection[Any], event: Event) -> None:
    p = event.payload
    call_id, seq = event.call_id, event.seq
    match p:
        case CallStarted():
            await conn.execute(
                """UPDATE calls SET agent_id = %s, agent_version = %s, channel = %s,
                       from_number = COALESCE(NULLIF(%s, ''), from_number),
                       to_number = COALESCE(NULLIF(%s, ''), to_number),
                       twilio_call_sid = COALESCE(%s, twilio_call_sid),
                       stream_sid = %s, node_id = %s,
                       answered_at = COALESCE(answered_at, %s),
                       status = CASE WHEN status_rank < 2 THEN 'in-progress' ELSE status END,
                       status_rank = GREATEST(status_rank, 2),
                       updated_at = now()
                   WHERE call_id = %s""",
                (
                    p.agent_id,
                    p.agent_version,
                    p.channel,
                    p.from_number,
                    p.to_number,
                    p.twilio_call_sid,
                    p.stream_sid,
                    p.node_id,
                    event.occurred_at,
                    call_id,
                ),
            )
        case TurnUser() | TurnAgent():
            speaker = "caller" if isinstance(p, TurnUser) else "agent"
            await conn.execute(
                """INSERT INTO call_turns (call_id, speaker, turn_index, text, planned_text,
                       start_ms, end_ms, confidence, source, interrupted, state)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (call_id, speaker, turn_index) DO UPDATE SET
                       text = EXCLUDED.text, planned_text = EXCLUDED.planned_text,
                       start_ms = EXCLUDED.start_ms, end_ms = EXCLUDED.end_ms,
                       confidence = EXCLUDED.confidence, interrupted = EXCLUDED.interrupted,
                       state = EXCLUDED.state""",
                (
                    call_id,
                    speaker,
                    p.turn_index,
                    p.text,
                    p.planned_text if isinstance(p, TurnAgent) else None,
                    p.start_ms,
                    p.end_ms,
                    p.confidence if isinstance(p, TurnUser) else None,
                    p.source if isinstance(p, TurnUser) else "agent",
                    p.interrupted if isinstance(p, TurnAgent) else False,
                    p.state if isinstance(p, TurnAgent) else None,
                ),
            )
        case IntentDetected():
            await conn.execute(
                """INSERT INTO call_intents (call_id, turn_index, intent, confidence, source)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                (call_id, p.turn_index, p.intent, p.confidence, p.source),
            )
            await conn.execute(
                """UPDATE calls SET intents = array_append(intents, %s), updated_at = now()
                   WHERE call_id = %s AND NOT (%s = ANY(intents))""",
                (p.intent, call_id, p.intent),
            )
        case SlotFilled():
            await conn.execute(
                """UPDATE calls SET slots = slots || jsonb_build_object(%s::text, %s::jsonb),
                       updated_at = now() WHERE call_id = %s""",
                (p.name, Jsonb(p.value), call_id),
            )
        case DispositionSet():
            await conn.execute(
                """UPDATE calls SET disposition = %s, summary = %s, slots = slots || %s,
                       last_seq = GREATEST(last_seq, %s), updated_at = now()
                   WHERE call_id = %s AND last_seq <= %s""",
                (p.disposition, p.summary, Jsonb(p.slots), seq, call_id, seq),
            )
        case CallEnded():
            await conn.execute(
                """UPDATE calls SET ended_at = COALESCE(ended_at, %s), duration_ms = %s,
                       end_reason = %s, recording_url = COALESCE(%s, recording_url),
                       status = CASE WHEN status_rank < 3 THEN 'completed' ELSE status END,
                       status_rank = 3, last_seq = GREATEST(last_seq, %s), updated_at = now()
                   WHERE call_id = %s""",
                (event.occurred_at, p.duration_ms, p.reason, p.recording_url, seq, call_id),
            )
        case LatencyMeasured():
            await conn.execute(
                """INSERT INTO call_latency (call_id, turn_index, endpoint_ms, asr_ms,
                       dialogue_first_text_ms, tts_first_audio_ms, voice_to_voice_ms)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (call_id, turn_index) DO UPDATE SET
                       endpoint_ms = EXCLUDED.endpoint_ms, asr_ms = EXCLUDED.asr_ms,
                       dialogue_first_text_ms = EXCLUDED.dialogue_first_text_ms,
                       tts_first_audio_ms = EXCLUDED.tts_first_audio_ms,
                       voice_to_voice_ms = EXCLUDED.voice_to_voice_ms""",
                (
                    call_id,
                    p.turn_index,
                    p.endpoint_ms,
                    p.asr_ms,
                    p.dialogue_first_text_ms,
                    p.tts_first_audio_ms,
                    p.voice_to_voice_ms,
                ),
            )
        case _:
            # escalation.requested and future types are kept in call_events only.
            return
