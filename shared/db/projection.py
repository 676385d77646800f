"""The projection of call events onto rows: calls, call_turns, call_intents, call_latency.

Idempotent by construction: an event is applied only if its ``event_id`` is new to
``call_events``; call-level facts (status, disposition) only move forward in ``seq`` so a late or
replayed event cannot move a call backwards, and a call closed as lost (``lost_at``, see
``functions/consumer/lost_calls.py``) keeps that closing when its node's late events arrive.

A call has one media stream. A node numbers a stream's events 0, 1, ... and ``call.ended`` is its
last, so an event that reuses a number another event of the call already has, or comes after the
call's ``call.ended``, is from a second stream for the same call (a replayed webhook or token that
got through): it is neither recorded nor projected, and what the first stream stored stays as it
is. A known value (agent version, stream SID, node) is never replaced by an unknown one.

Both the media node (embedded mode) and the Kafka consumer use this one function, inside the
caller's transaction.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

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

log = logging.getLogger(__name__)

# Events that change the calls row itself; they are applied one by one, in order.
_CALL_LEVEL = (
    CallStarted,
    SlotFilled,
    DispositionSet,
    EscalationRequested,
    ToolCalled,
    CallEnded,
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
    return len(await apply_new_events(conn, events))


async def apply_new_events(conn: AsyncConnection[Any], events: Iterable[Event]) -> list[Event]:
    """Apply events in order inside the current transaction; return the new ones (what the
    caller may act on once: a duplicate or a second stream's event comes back in none).

    Batched, so a batch costs a handful of statements instead of ~3 per event: one records every
    event (the new ones come back); turns, latencies and intents are written with one set-based
    statement each (rows keyed by turn: the last event of a key wins, as applying them one by
    one would); call-level events (start, slots, disposition, end) run in order in a pipeline."""
    batch: list[Event] = []
    seen: set[uuid.UUID] = set()
    for event in events:
        if event.event_id not in seen:  # a repeat inside the batch is a duplicate too
            seen.add(event.event_id)
            batch.append(event)
    batch = _first_stream_only(batch)
    if not batch:
        return []
    new_ids = await _record(conn, batch)
    fresh = [e for e in batch if e.event_id in new_ids]
    if fresh:
        await _project_rows(conn, fresh)
        call_level = [e for e in fresh if isinstance(e.payload, _CALL_LEVEL)]
        if call_level:
            async with conn.pipeline():
                for event in call_level:
                    await _project(conn, event)
    return fresh


def _first_stream_only(events: list[Event]) -> list[Event]:
    """The batch without events of a second stream of a call (see the module docstring); the
    database check in :func:`_record` does the same against earlier batches."""
    kept: list[Event] = []
    seqs: dict[str, set[int]] = {}
    ended: dict[str, int] = {}
    for event in events:
        taken = seqs.setdefault(event.call_id, set())
        end = ended.get(event.call_id)
        if event.seq in taken or (end is not None and event.seq > end):
            log.warning(
                "call %s: %s seq %d is from a second stream; not applied",
                event.call_id,
                event.type,
                event.seq,
            )
            continue
        taken.add(event.seq)
        if isinstance(event.payload, CallEnded) and end is None:
            ended[event.call_id] = event.seq
        kept.append(event)
    return kept


async def _project_rows(conn: AsyncConnection[Any], events: list[Event]) -> None:
    """Turns, latencies and intents: independent rows, written set-based."""
    turns: dict[tuple[str, str, int], dict[str, Any]] = {}
    latency: dict[tuple[str, int], dict[str, Any]] = {}
    intents: list[dict[str, Any]] = []
    for event in events:
        p, call_id = event.payload, event.call_id
        match p:
            case TurnUser():
                turns[(call_id, "caller", p.turn_index)] = {
                    "call_id": call_id, "speaker": "caller", "turn_index": p.turn_index,
                    "text": p.text, "start_ms": p.start_ms, "end_ms": p.end_ms,
                    "confidence": p.confidence, "source": p.source, "interrupted": False,
                }  # fmt: skip
            case TurnAgent():
                turns[(call_id, "agent", p.turn_index)] = {
                    "call_id": call_id, "speaker": "agent", "turn_index": p.turn_index,
                    "text": p.text, "planned_text": p.planned_text, "start_ms": p.start_ms,
                    "end_ms": p.end_ms, "source": "agent", "interrupted": p.interrupted,
                    "state": p.state,
                }  # fmt: skip
            case LatencyMeasured():
                latency[(call_id, p.turn_index)] = {"call_id": call_id, **p.model_dump()}
            case IntentDetected():
                intents.append({"call_id": call_id, "ord": len(intents), **p.model_dump()})
    if turns:
        await conn.execute(
            """INSERT INTO call_turns (call_id, speaker, turn_index, text, planned_text,
                   start_ms, end_ms, confidence, source, interrupted, state)
               SELECT * FROM json_to_recordset(%s::json) AS x(call_id text, speaker text,
                   turn_index int, text text, planned_text text, start_ms int, end_ms int,
                   confidence real, source text, interrupted bool, state text)
               ON CONFLICT (call_id, speaker, turn_index) DO UPDATE SET
                   text = EXCLUDED.text, planned_text = EXCLUDED.planned_text,
                   start_ms = EXCLUDED.start_ms, end_ms = EXCLUDED.end_ms,
                   confidence = EXCLUDED.confidence, interrupted = EXCLUDED.interrupted,
                   state = EXCLUDED.state""",
            (_json(turns.values()),),
        )
    if latency:
        await conn.execute(
            """INSERT INTO call_latency (call_id, turn_index, endpoint_ms, asr_ms,
                   dialogue_first_text_ms, tts_first_audio_ms, voice_to_voice_ms)
               SELECT * FROM json_to_recordset(%s::json) AS x(call_id text, turn_index int,
                   endpoint_ms real, asr_ms real, dialogue_first_text_ms real,
                   tts_first_audio_ms real, voice_to_voice_ms real)
               ON CONFLICT (call_id, turn_index) DO UPDATE SET
                   endpoint_ms = EXCLUDED.endpoint_ms, asr_ms = EXCLUDED.asr_ms,
                   dialogue_first_text_ms = EXCLUDED.dialogue_first_text_ms,
                   tts_first_audio_ms = EXCLUDED.tts_first_audio_ms,
                   voice_to_voice_ms = EXCLUDED.voice_to_voice_ms""",
            (_json(latency.values()),),
        )
    if intents:
        # call_intents rows, then each call's new intents appended to calls.intents once, in
        # the order they came (what appending them one by one would give).
        await conn.execute(
            """WITH v AS (SELECT * FROM json_to_recordset(%s::json) AS v(call_id text,
                              turn_index int, intent text, confidence real, source text, ord int)),
                    ins AS (INSERT INTO call_intents
                                (call_id, turn_index, intent, confidence, source)
                            SELECT call_id, turn_index, intent, confidence, source FROM v
                            ON CONFLICT DO NOTHING),
                    firsts AS (SELECT DISTINCT ON (call_id, intent) call_id, intent, ord FROM v
                               ORDER BY call_id, intent, ord),
                    added AS (SELECT f.call_id, array_agg(f.intent ORDER BY f.ord) AS new
                              FROM firsts f JOIN calls c USING (call_id)
                              WHERE NOT (f.intent = ANY(c.intents)) GROUP BY f.call_id)
               UPDATE calls c SET intents = c.intents || added.new, updated_at = now()
               FROM added WHERE c.call_id = added.call_id""",
            (_json(intents),),
        )


def _json(rows: Iterable[dict[str, Any]]) -> str:
    return json.dumps(list(rows), separators=(",", ":"))


async def _record(conn: AsyncConnection[Any], events: list[Event]) -> set[uuid.UUID]:
    """Insert the calls and raw events in one statement; return the ids of the new events.
    The events travel as one JSON array that PostgreSQL unpacks (far cheaper than arrays)."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(
        """WITH e AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS e(event_id uuid,
                          call_id text, tenant_id text, seq int, type text, schema_version int,
                          occurred_at timestamptz, payload jsonb)),
                live AS (SELECT * FROM e WHERE NOT EXISTS (  -- a deleted call stays deleted
                             SELECT 1 FROM deleted_calls d WHERE d.call_id = e.call_id)),
                calls_added AS (INSERT INTO calls (call_id, tenant_id)
                                SELECT DISTINCT ON (call_id) call_id, tenant_id FROM live
                                ORDER BY call_id ON CONFLICT (call_id) DO NOTHING)
           INSERT INTO call_events
               (event_id, call_id, tenant_id, seq, type, schema_version, occurred_at, payload)
           SELECT event_id, call_id, tenant_id, seq, type, schema_version, occurred_at, payload
           FROM live e
           WHERE NOT EXISTS (  -- a second stream of the call: its number is taken or it is over
               SELECT 1 FROM call_events o
               WHERE o.call_id = e.call_id AND o.event_id <> e.event_id
                 AND (o.seq = e.seq OR (o.type = 'call.ended' AND o.seq < e.seq)))
           ON CONFLICT (event_id) DO NOTHING
           RETURNING event_id""",
        ("[" + ",".join(e.model_dump_json() for e in events) + "]",),
    )
    return {row[0] for row in await cur.fetchall()}


async def _project(conn: AsyncConnection[Any], event: Event) -> None:
    p = event.payload
    call_id, seq = event.call_id, event.seq
    match p:
        case CallStarted():
            await conn.execute(
                """UPDATE calls SET agent_id = COALESCE(agent_id, %s),
                       agent_version = COALESCE(%s, agent_version), channel = %s,
                       from_number = COALESCE(NULLIF(from_number, ''), %s),
                       to_number = COALESCE(NULLIF(to_number, ''), %s),
                       twilio_call_sid = COALESCE(twilio_call_sid, %s),
                       stream_sid = COALESCE(stream_sid, %s), node_id = COALESCE(%s, node_id),
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
                   WHERE call_id = %s AND last_seq <= %s AND lost_at IS NULL""",
                (p.disposition, p.summary, Jsonb(p.slots), seq, call_id, seq),
            )
        case EscalationRequested():
            await conn.execute(
                """UPDATE calls SET escalation_reason = COALESCE(escalation_reason, %s),
                       updated_at = now() WHERE call_id = %s""",
                (p.reason, call_id),
            )
        case ToolCalled():
            await conn.execute(
                """UPDATE calls SET tool_calls = tool_calls + 1,
                       tool_failures = tool_failures + CASE WHEN %s THEN 0 ELSE 1 END,
                       tools = CASE WHEN %s = ANY(tools) THEN tools ELSE tools || %s::text END,
                       updated_at = now() WHERE call_id = %s""",
                (p.ok, p.state, p.state, call_id),
            )
        case CallEnded():
            # What the call used and its median latency, read once from its rows (written
            # before call-level events), so aggregates never touch turns or latencies.
            await conn.execute(
                """UPDATE calls SET ended_at = COALESCE(ended_at, %s), duration_ms = %s,
                       end_reason = COALESCE(end_reason, %s),
                       recording_url = COALESCE(%s, recording_url),
                       status = CASE WHEN status_rank < 3 THEN 'completed' ELSE status END,
                       status_rank = 3, last_seq = GREATEST(last_seq, %s),
                       llm_tokens = COALESCE(%s, llm_tokens),
                       asr_audio_ms = (SELECT COALESCE(sum(GREATEST(end_ms - start_ms, 0)), 0)
                                       FROM call_turns t WHERE t.call_id = calls.call_id
                                         AND t.speaker = 'caller' AND t.source = 'speech'),
                       tts_chars = (SELECT COALESCE(sum(length(text)), 0) FROM call_turns t
                                    WHERE t.call_id = calls.call_id AND t.speaker = 'agent'),
                       voice_to_voice_p50_ms = (
                           SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY voice_to_voice_ms)
                           FROM call_latency l WHERE l.call_id = calls.call_id),
                       updated_at = now()
                   WHERE call_id = %s AND lost_at IS NULL""",
                (
                    event.occurred_at,
                    p.duration_ms,
                    p.reason,
                    p.recording_url,
                    seq,
                    p.llm_tokens,
                    call_id,
                ),
            )
        case _:
            # Turns, intents and latencies are written by _project_rows; escalation.requested
            # and future types are kept in call_events only.
            return
