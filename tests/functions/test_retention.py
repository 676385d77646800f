"""Deleting calls and the retention purge (shared/retention.py) on the real PostgreSQL, with real
recording files on disk and S3 objects in moto."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
from moto import mock_aws
from psycopg.types.json import Jsonb

from shared.db import apply_events, connect
from shared.events import CallEnded, CallStarted, Event, LatencyMeasured, TurnUser
from shared.retention import purge_expired
from tests.functions.conftest import make_tenant

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _call(
    sql: psycopg.Connection[Any],
    tenant_id: str,
    *,
    days_ago: float,
    recording: str | None = None,
    number: str = "+15550001111",
) -> str:
    call_id = f"r-{uuid.uuid4().hex[:10]}"
    sid = "CA" + uuid.uuid4().hex
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, agent_id, from_number, started_at, duration_ms, "
        "disposition, recording_url, twilio_call_sid) "
        "VALUES (%s, %s, 'a', %s, %s, 1000, 'resolved', %s, %s)",
        (call_id, tenant_id, number, NOW - timedelta(days=days_ago), recording, sid),
    )
    sql.execute(
        "INSERT INTO call_turns (call_id, speaker, turn_index, text, start_ms, end_ms) "
        "VALUES (%s, 'caller', 0, 'my card is 4111', 0, 900)",
        (call_id,),
    )
    sql.execute(
        "INSERT INTO call_latency (call_id, turn_index, voice_to_voice_ms) VALUES (%s, 0, 700)",
        (call_id,),
    )
    sql.execute(
        "INSERT INTO call_status_events (call_sid, status) VALUES (%s, 'completed')", (sid,)
    )
    return call_id


def _settings(sql: psycopg.Connection[Any], tenant_id: str, **values: Any) -> None:
    sql.execute(
        "UPDATE tenants SET settings = settings || %s WHERE tenant_id = %s",
        (Jsonb(values), tenant_id),
    )


def _exists(sql: psycopg.Connection[Any], call_id: str) -> bool:
    row = sql.execute("SELECT 1 FROM calls WHERE call_id = %s", (call_id,)).fetchone()
    return row is not None


def _aggregated_calls(sql: psycopg.Connection[Any], tenant_id: str) -> int:
    row = sql.execute(
        "SELECT COALESCE(sum(calls), 0) AS n FROM (SELECT calls FROM call_aggregate_daily "
        "WHERE tenant_id = %s UNION ALL SELECT calls FROM call_aggregate_deltas "
        "WHERE tenant_id = %s) r",
        (tenant_id, tenant_id),
    ).fetchone()
    assert row is not None
    return int(row["n"])


def _latency_turns(sql: psycopg.Connection[Any], tenant_id: str) -> int:
    row = sql.execute(
        "SELECT COALESCE(sum(turns), 0) AS n FROM (SELECT turns FROM latency_rollup_daily "
        "WHERE tenant_id = %s UNION ALL SELECT turns FROM latency_rollup_deltas "
        "WHERE tenant_id = %s) r",
        (tenant_id, tenant_id),
    ).fetchone()
    assert row is not None
    return int(row["n"])


async def test_purge_deletes_expired_calls_with_everything_derived(
    database_url: str, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    tenant = make_tenant(sql).tenant_id
    keeper = make_tenant(sql).tenant_id  # no call retention: keeps every call
    _settings(sql, tenant, call_retention_days=30, recording_retention_days=3650)
    _settings(sql, keeper, recording_retention_days=3650)
    root = tmp_path / "recordings"
    root.mkdir()
    old_file = root / "old.wav"
    old_file.write_bytes(b"RIFF")
    old = _call(sql, tenant, days_ago=31, recording=f"file://{old_file}")
    fresh = _call(sql, tenant, days_ago=29)
    kept = _call(sql, keeper, days_ago=400)
    assert _latency_turns(sql, tenant) == 2
    assert _aggregated_calls(sql, tenant) == 2

    report = await purge_expired(database_url, recording_root=root, now=NOW)

    assert report.calls == {tenant: 1}
    assert not _exists(sql, old) and _exists(sql, fresh) and _exists(sql, kept)
    assert not old_file.exists()
    for table in ("call_turns", "call_latency", "call_events"):
        row = sql.execute(f"SELECT count(*) AS n FROM {table} WHERE call_id = %s", (old,))
        assert row.fetchone() == {"n": 0}, table
    assert _latency_turns(sql, tenant) == 1  # the rollups went down with the call
    assert _aggregated_calls(sql, tenant) == 1
    audit = sql.execute(
        "SELECT key_id, action, detail FROM tenant_audit_log WHERE tenant_id = %s", (tenant,)
    ).fetchall()
    assert audit == [
        {
            "key_id": "retention",
            "action": "calls_purged",
            "detail": {"calls": 1, "retention_days": 30},
        }
    ]
    again = await purge_expired(database_url, recording_root=root, now=NOW)
    assert again.total_calls == 0  # idempotent


async def test_purged_call_is_not_brought_back_by_a_replayed_event(
    database_url: str, sql: psycopg.Connection[Any]
) -> None:
    tenant = make_tenant(sql).tenant_id
    _settings(sql, tenant, call_retention_days=1)
    call_id = f"r-{uuid.uuid4().hex[:10]}"
    events = [
        Event(
            tenant_id=tenant,
            call_id=call_id,
            seq=0,
            occurred_at=NOW - timedelta(days=3),
            payload=CallStarted(agent_id="a", from_number="+15550002222"),
        ),
        Event(
            tenant_id=tenant,
            call_id=call_id,
            seq=1,
            payload=TurnUser(turn_index=0, text="hello", start_ms=0, end_ms=1200),
        ),
        Event(
            tenant_id=tenant,
            call_id=call_id,
            seq=2,
            payload=LatencyMeasured(turn_index=0, voice_to_voice_ms=640),
        ),
        Event(
            tenant_id=tenant,
            call_id=call_id,
            seq=3,
            payload=CallEnded(reason="hangup", duration_ms=5000),
        ),
    ]
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            assert await apply_events(conn, events) == 4
        await conn.execute(
            "UPDATE calls SET started_at = %s WHERE call_id = %s",
            (NOW - timedelta(days=3), call_id),
        )
        await conn.commit()
        assert (await purge_expired(database_url, now=NOW)).calls == {tenant: 1}
        async with conn.transaction():
            assert await apply_events(conn, events) == 0  # a replay from the topic
    finally:
        await conn.close()
    assert not _exists(sql, call_id)
    assert sql.execute(
        "SELECT reason FROM deleted_calls WHERE call_id = %s", (call_id,)
    ).fetchone() == {"reason": "retention"}


async def test_purge_deletes_expired_recordings_and_keeps_the_call(
    database_url: str, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    tenant = make_tenant(sql).tenant_id
    _settings(sql, tenant, recording_retention_days=7)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="parley-recordings")
        s3.put_object(Bucket="parley-recordings", Key="t/old.wav", Body=b"RIFF")
        s3.put_object(Bucket="parley-recordings", Key="t/new.wav", Body=b"RIFF")
        old = _call(sql, tenant, days_ago=8, recording="s3://parley-recordings/t/old.wav")
        new = _call(sql, tenant, days_ago=6, recording="s3://parley-recordings/t/new.wav")

        report = await purge_expired(database_url, now=NOW, tenant_id=tenant)

        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="parley-recordings")["Contents"]]
    assert report.recordings == {tenant: 1} and report.total_calls == 0
    assert keys == ["t/new.wav"]
    rows = {
        r["call_id"]: r
        for r in sql.execute(
            "SELECT call_id, recording_url, recording_deleted_at FROM calls WHERE tenant_id = %s",
            (tenant,),
        )
    }
    assert rows[old]["recording_url"] is None and rows[old]["recording_deleted_at"] == NOW
    assert rows[new]["recording_url"] == "s3://parley-recordings/t/new.wav"


async def test_purge_without_call_retention_keeps_calls(
    database_url: str, sql: psycopg.Connection[Any]
) -> None:
    tenant = make_tenant(sql).tenant_id
    call_id = _call(sql, tenant, days_ago=10_000)
    report = await purge_expired(database_url, now=NOW, tenant_id=tenant)
    assert report.total_calls == 0 and _exists(sql, call_id)
