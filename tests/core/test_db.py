"""PostgreSQL: migrations and the event projection, against the real server."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from shared.db import DatabaseUnavailable, apply_events, connect, migrate, pending_migrations
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

pytestmark = pytest.mark.integration


def call_story(call_id: str) -> list[Event]:
    payloads: list[Any] = [
        CallStarted(agent_id="acme-shop", from_number="+15550001", to_number="+15550002"),
        TurnAgent(turn_index=0, text="Hi, this is Acme.", start_ms=0, end_ms=1500, state="greet"),
        TurnUser(
            turn_index=0, text="where is my order", start_ms=1600, end_ms=2900, confidence=0.9
        ),
        IntentDetected(turn_index=0, intent="order_status", confidence=0.91),
        SlotFilled(turn_index=1, name="order_number", value="4567", slot_type="digits"),
        LatencyMeasured(turn_index=0, asr_ms=120, voice_to_voice_ms=480.5),
        DispositionSet(disposition="resolved", summary="order 4567 status given"),
        CallEnded(reason="agent_end", duration_ms=30_000),
    ]
    return [
        Event(tenant_id="t1", call_id=call_id, seq=i, payload=p) for i, p in enumerate(payloads)
    ]


async def fetch(
    conn: psycopg.AsyncConnection[Any], sql: str, *args: object
) -> list[dict[str, Any]]:
    cur = await conn.execute(sql, args)
    return await cur.fetchall()


def test_migrations_are_applied_once(database_url: str) -> None:
    assert pending_migrations(database_url) == []
    assert migrate(database_url) == []


async def test_projection_builds_the_call(db_pool: Any) -> None:
    call_id = f"call-{uuid.uuid4().hex[:8]}"
    async with db_pool.connection() as conn:
        assert await apply_events(conn, call_story(call_id)) == 8
        [call] = await fetch(conn, "SELECT * FROM calls WHERE call_id = %s", call_id)
        turns = await fetch(
            conn,
            "SELECT speaker, text FROM call_turns WHERE call_id = %s ORDER BY start_ms",
            call_id,
        )
        [latency] = await fetch(conn, "SELECT * FROM call_latency WHERE call_id = %s", call_id)
    assert call["agent_id"] == "acme-shop" and call["from_number"] == "+15550001"
    assert call["status"] == "completed" and call["disposition"] == "resolved"
    assert call["intents"] == ["order_status"]
    assert call["slots"] == {"order_number": "4567"}
    assert call["duration_ms"] == 30_000
    assert [(t["speaker"], t["text"]) for t in turns] == [
        ("agent", "Hi, this is Acme."),
        ("caller", "where is my order"),
    ]
    assert latency["voice_to_voice_ms"] == pytest.approx(480.5)


async def test_projection_is_idempotent(db_pool: Any) -> None:
    call_id = f"call-{uuid.uuid4().hex[:8]}"
    story = call_story(call_id)
    async with db_pool.connection() as conn:
        await apply_events(conn, story)
        assert await apply_events(conn, story) == 0  # redelivery changes nothing
        [row] = await fetch(
            conn, "SELECT count(*) AS n FROM call_events WHERE call_id = %s", call_id
        )
        [call] = await fetch(conn, "SELECT intents FROM calls WHERE call_id = %s", call_id)
    assert row["n"] == 8
    assert call["intents"] == ["order_status"]


async def test_late_disposition_cannot_move_a_call_backwards(db_pool: Any) -> None:
    call_id = f"call-{uuid.uuid4().hex[:8]}"
    async with db_pool.connection() as conn:
        await apply_events(conn, call_story(call_id))
        stale = Event(
            tenant_id="t1",
            call_id=call_id,
            seq=2,
            payload=DispositionSet(disposition="no_input"),
        )
        # Its number is another event's: not this stream's, so neither recorded nor projected.
        assert await apply_events(conn, [stale]) == 0
        [call] = await fetch(conn, "SELECT disposition FROM calls WHERE call_id = %s", call_id)
    assert call["disposition"] == "resolved"


def second_stream(call_id: str) -> list[Event]:
    """What a second stream for the same call (a replayed webhook or token) would send."""
    payloads: list[Any] = [
        CallStarted(agent_id="acme-shop", agent_version=None, stream_sid="MZsecond"),
        TurnAgent(turn_index=0, text="Hi, this is Acme.", start_ms=0, end_ms=1500),
        TurnUser(turn_index=0, text="something else entirely", start_ms=1600, end_ms=2900),
        DispositionSet(disposition="abandoned"),
        CallEnded(reason="caller_hung_up", duration_ms=5_000),
        *[
            TurnUser(turn_index=i, text=f"more words {i}", start_ms=3000 + i, end_ms=3001 + i)
            for i in range(1, 6)
        ],
        CallEnded(reason="error", duration_ms=9_000),
    ]
    return [
        Event(tenant_id="t1", call_id=call_id, seq=i, payload=p) for i, p in enumerate(payloads)
    ]


async def _stored(conn: psycopg.AsyncConnection[Any], call_id: str) -> tuple[Any, ...]:
    [call] = await fetch(
        conn,
        """SELECT agent_version, stream_sid, node_id, end_reason, duration_ms, disposition,
                  ended_at FROM calls WHERE call_id = %s""",
        call_id,
    )
    turns = await fetch(
        conn,
        "SELECT * FROM call_turns WHERE call_id = %s ORDER BY speaker, turn_index",
        call_id,
    )
    return call, turns


@pytest.mark.parametrize("together", [False, True], ids=["later-batch", "same-batch"])
async def test_a_second_stream_of_a_call_changes_nothing_stored(
    db_pool: Any, together: bool
) -> None:
    """Whether the second stream's events come in a later batch or in the same one, the call
    keeps its first stream's end, duration, stream SID, agent version and turns."""
    call_id = f"call-{uuid.uuid4().hex[:8]}"
    first = call_story(call_id)
    first[0] = first[0].model_copy(
        update={
            "payload": CallStarted(
                agent_id="acme-shop", agent_version=3, stream_sid="MZfirst", node_id="node-1"
            )
        }
    )
    async with db_pool.connection() as conn:
        if together:
            assert await apply_events(conn, first + second_stream(call_id)) == len(first)
        else:
            assert await apply_events(conn, first) == len(first)
        before = await _stored(conn, call_id)
        assert await apply_events(conn, second_stream(call_id)) == 0
        after = await _stored(conn, call_id)
        [events] = await fetch(
            conn, "SELECT count(*) AS n FROM call_events WHERE call_id = %s", call_id
        )
    assert after == before
    call, turns = after
    assert (call["stream_sid"], call["agent_version"], call["node_id"]) == ("MZfirst", 3, "node-1")
    assert (call["end_reason"], call["duration_ms"]) == ("agent_end", 30_000)
    assert [t["text"] for t in turns if t["speaker"] == "caller"] == ["where is my order"]
    assert events["n"] == len(first)


async def test_the_agent_version_the_webhook_stored_is_kept_when_the_stream_knows_none(
    db_pool: Any,
) -> None:
    call_id = f"call-{uuid.uuid4().hex[:8]}"
    async with db_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO calls (call_id, tenant_id, agent_id, agent_version, node_id)"
            " VALUES (%s, 't1', 'acme-shop', 7, 'picked')",
            (call_id,),
        )
        await apply_events(conn, call_story(call_id))  # call.started without a version
        [call] = await fetch(
            conn, "SELECT agent_version, node_id FROM calls WHERE call_id = %s", call_id
        )
    assert (call["agent_version"], call["node_id"]) == (7, "picked")


async def test_failed_batch_writes_nothing(db_pool: Any) -> None:
    call_id = f"call-{uuid.uuid4().hex[:8]}"
    story = call_story(call_id)
    with pytest.raises(psycopg.errors.UniqueViolation):
        async with db_pool.connection() as conn, conn.transaction():
            await apply_events(conn, story[:3])
            # A second call claiming the same Twilio SID violates a constraint mid-batch.
            await conn.execute(
                "INSERT INTO calls (call_id, tenant_id, twilio_call_sid)"
                " VALUES ('x1', 't1', 'CA1'), ('x2', 't1', 'CA1')"
            )
    async with db_pool.connection() as conn:
        rows = await fetch(conn, "SELECT 1 FROM call_events WHERE call_id = %s", call_id)
    assert rows == []


async def test_unreachable_database_is_named() -> None:
    with pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1:1/nowhere"):
        await connect("postgresql://postgres@127.0.0.1:1/nowhere")
