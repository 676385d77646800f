"""The analytics Lambda: filters, cursor pages, CSV, one call, summaries, isolation, bad input."""

from __future__ import annotations

import csv
import io
import json
import uuid
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from functions.analytics.app import handler
from shared.db import apply_events, connect
from shared.events import parse_event
from tests.functions.conftest import Tenant, api_event, invoke

CALL_EVENTS = Path(__file__).resolve().parents[2] / "events" / "samples" / "call-events"
DAY0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _get(sample: str, tenant: Tenant | None, **kwargs: Any) -> Any:
    return invoke(handler, api_event(sample, tenant, **kwargs))


def _list(tenant: Tenant, **query: str) -> Any:
    return _get("analytics.get-v1-calls.json", tenant, query=query)


def _seed(sql: psycopg.Connection[Any], tenant_id: str) -> list[str]:
    """20 calls over 10 days: 2 agents, 3 dispositions, durations 10..200 s, some intents."""
    ids = []
    for i in range(20):
        call_id = f"c{i:02d}-{uuid.uuid4().hex[:6]}"
        ids.append(call_id)
        sql.execute(
            """INSERT INTO calls (call_id, tenant_id, agent_id, from_number, to_number, status,
                   status_rank, started_at, duration_ms, disposition, intents, summary)
               VALUES (%s, %s, %s, %s, '+15559870000', 'completed', 3, %s, %s, %s, %s, %s)""",
            (
                call_id,
                tenant_id,
                "sales" if i % 2 else "support",
                f"+1555000{i:04d}",
                DAY0 + timedelta(days=i // 2, minutes=i),
                (i + 1) * 10_000,
                ("resolved", "escalated_to_human", "caller_hung_up")[i % 3],
                ["order_status"]
                if i % 4 == 0
                else ["refund", "order_status"]
                if i % 4 == 1
                else [],
                "=HYPERLINK(evil)" if i == 0 else f"call {i}",
            ),
        )
    return ids


@pytest.fixture
def seeded(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> list[str]:
    _seed(sql, other_tenant.tenant_id)
    return _seed(sql, tenant.tenant_id)


def test_filters_select_the_right_calls(seeded: list[str], tenant: Tenant) -> None:
    def ids(**query: str) -> list[str]:
        reply = _list(tenant, **({"limit": "100"} | query))
        assert reply.status == 200, reply.body
        return [c["call_id"][:3] for c in reply.json()["items"]]

    assert len(ids()) == 20 and ids()[0] == "c19"  # newest first, only this tenant
    assert ids(disposition="resolved") == [f"c{i:02d}" for i in range(18, -1, -3)]
    assert set(ids(agent_id="sales")) == {f"c{i:02d}" for i in range(1, 20, 2)}
    assert set(ids(intent="refund")) == {f"c{i:02d}" for i in range(1, 20, 4)}
    assert ids(number="+15550000007") == ["c07"]
    assert set(ids(min_duration_ms="150000", max_duration_ms="170000")) == {"c14", "c15", "c16"}
    window = {
        "started_after": "2026-11-03T00:00:00Z",
        "started_before": "2026-11-04T00:00:00+00:00",
    }
    assert ids(**window) == ["c05", "c04"]
    assert ids(status="completed", sort="duration_ms", limit="3") == ["c00", "c01", "c02"]
    assert ids(status="ringing") == []


def test_text_search_finds_words_in_transcripts(
    seeded: list[str], sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    sql.execute(
        "INSERT INTO call_turns (call_id, speaker, turn_index, text, start_ms, end_ms) "
        "VALUES (%s, 'caller', 0, 'Where is my parcel? It was shipped last week.', 0, 900)",
        (seeded[3],),
    )
    found = _list(tenant, q="shipped parcel").json()["items"]
    assert [c["call_id"] for c in found] == [seeded[3]]
    assert _list(tenant, q="don't know").json()["items"] == []


def test_cursor_pages_walk_every_call_once_in_both_sort_orders(
    seeded: list[str], tenant: Tenant
) -> None:
    for sort in ("-started_at", "started_at", "-duration_ms", "duration_ms"):
        seen: list[str] = []
        cursor = None
        while True:
            query = {"limit": "7", "sort": sort} | ({"cursor": cursor} if cursor else {})
            page = _list(tenant, **query).json()
            seen += [c["call_id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(seeded) and len(seen) == 20, sort
        if sort == "-started_at":
            assert seen == list(reversed(seeded))


def test_csv_export(seeded: list[str], tenant: Tenant) -> None:
    reply = _get(
        "analytics.get-v1-calls.json", tenant, query={"limit": "5"}, headers={"accept": "text/csv"}
    )
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.body)))
    assert len(rows) == 5 and rows[0]["call_id"] == seeded[19]
    assert reply.headers["x-next-cursor"]
    last = _list(tenant, agent_id="support", sort="started_at", limit="1", format="csv")
    (first_call,) = list(csv.DictReader(io.StringIO(last.body)))
    assert first_call["summary"] == "'=HYPERLINK(evil)"  # no spreadsheet formulas
    assert first_call["intents"] == "order_status"


def test_one_call_with_transcript_disposition_and_latency_from_the_event_projection(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    other_tenant: Tenant,
    run: Any,
    database_url: str,
) -> None:
    """A simulated call's events (as the media node emits them) show up through the API."""
    call_id = f"call-{uuid.uuid4().hex[:8]}"
    events = []
    for path in sorted(CALL_EVENTS.glob("*.json")):
        data = json.loads(path.read_text())
        data.update(event_id=str(uuid.uuid4()), tenant_id=tenant.tenant_id, call_id=call_id)
        data["payload"].pop("twilio_call_sid", None)
        events.append(parse_event(data))

    async def project() -> None:
        conn = await connect(database_url)
        async with conn:
            await apply_events(conn, events)
            await conn.commit()

    run(project())
    reply = _get("analytics.get-v1-calls-call_id.json", tenant, path=f"/v1/calls/{call_id}")
    assert reply.status == 200, reply.body
    call = reply.json()
    assert call["disposition"] == "escalated_to_human" and call["status"] == "completed"
    assert call["slots"]["order_number"] == "4567"
    assert [t["speaker"] for t in call["turns"]][:2] == ["agent", "caller"]
    assert call["turns"][1]["text"]
    assert call["intent_hits"] and call["latency"] and call["voice_to_voice_p50_ms"] > 0
    assert call["summary"].startswith("Caller asked about order")

    stranger = _get(
        "analytics.get-v1-calls-call_id.json", other_tenant, path=f"/v1/calls/{call_id}"
    )
    assert stranger.status == 404 and call_id in stranger.json()["error"]["message"]
    assert "order_number" not in stranger.body
    listed = _list(other_tenant, limit="1000").json()["items"]
    assert call_id not in [c["call_id"] for c in listed]


def test_recordings_in_s3_get_a_presigned_link(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, monkeypatch: Any
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    call_id = f"rec-{uuid.uuid4().hex[:8]}"
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, recording_url) VALUES (%s, %s, %s)",
        (call_id, tenant.tenant_id, "s3://parley-recordings/t/call.wav"),
    )
    url = _get("analytics.get-v1-calls-call_id.json", tenant, path=f"/v1/calls/{call_id}").json()[
        "recording_url"
    ]
    assert url.startswith("https://parley-recordings.s3") and "Signature" in url
    redirect = _get(
        "analytics.get-v1-calls-call_id-recording.json",
        tenant,
        path=f"/v1/calls/{call_id}/recording",
    )
    assert redirect.status == 307
    assert redirect.headers["location"].startswith("https://parley-recordings.s3")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "100000"}, "query.limit"),
        ({"limit": "0"}, "query.limit"),
        ({"started_after": "yesterday"}, "query.started_after"),
        ({"started_after": "2026-13-45T00:00:00Z"}, "query.started_after"),
        (
            {"started_after": "2026-11-05T00:00:00Z", "started_before": "2026-11-01T00:00:00Z"},
            "query.started_before",
        ),
        ({"disposition": "resolved' OR '1'='1"}, "query.disposition"),
        ({"agent_id": "x; DROP TABLE calls"}, "query.agent_id"),
        ({"q": "'; DROP TABLE calls; --"}, "query.q"),
        ({"q": "refund -- comment"}, "query.q"),
        ({"number": "1 OR 1=1"}, "query.number"),
        ({"sort": "password"}, "query.sort"),
        ({"status": "hacked"}, "query.status"),
        ({"min_duration_ms": "-5"}, "query.min_duration_ms"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"tenant_id": "someone-else"}, "query.tenant_id"),
    ],
)
def test_bad_filters_get_422_with_the_field_named(
    rt: Any, tenant: Tenant, query: dict[str, str], field: str
) -> None:
    reply = _list(tenant, **query)
    assert reply.status == 422, reply.body
    error = reply.json()["error"]
    assert error["code"] == "invalid_request"
    # a multi-value filter names the value too (query.status.0)
    assert any(d["field"] in (field, f"{field}.0") for d in error["details"]), error


def test_a_cursor_only_continues_its_own_sort(seeded: list[str], tenant: Tenant) -> None:
    cursor = _list(tenant, limit="2").json()["next_cursor"]
    reply = _list(tenant, limit="2", sort="duration_ms", cursor=cursor)
    assert reply.status == 422 and "sort" in reply.json()["error"]["message"]


def test_every_route_needs_a_key(rt: Any) -> None:
    for sample in (
        "analytics.get-v1-calls.json",
        "analytics.get-v1-calls-call_id.json",
        "analytics.get-v1-dispositions-summary.json",
        "analytics.get-v1-intents-summary.json",
        "analytics.get-v1-latency-summary.json",
    ):
        reply = _get(sample, None)
        assert reply.status == 401, sample


def test_disposition_and_intent_summaries(
    seeded: list[str], sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    query = {"start": "2026-11-01", "end": "2026-11-30", "group_by": "total"}
    total = _get("analytics.get-v1-dispositions-summary.json", tenant, query=query).json()
    (group,) = total["groups"]
    assert group["calls"] == 20
    counts = {i["name"]: (i["count"], i["rate"]) for i in group["items"]}
    assert counts == {
        "resolved": (7, 0.35),
        "escalated_to_human": (7, 0.35),
        "caller_hung_up": (6, 0.3),
    }

    by_agent = _get(
        "analytics.get-v1-dispositions-summary.json", tenant, query=query | {"group_by": "agent"}
    ).json()
    assert [(g["key"], g["calls"]) for g in by_agent["groups"]] == [("sales", 10), ("support", 10)]
    by_day = _get(
        "analytics.get-v1-dispositions-summary.json", tenant, query=query | {"group_by": "day"}
    ).json()
    assert len(by_day["groups"]) == 10 and by_day["groups"][0]["key"] == "2026-11-01"
    by_week = _get(
        "analytics.get-v1-dispositions-summary.json",
        tenant,
        query=query | {"group_by": "week", "agent_id": "sales"},
    ).json()
    assert sum(g["calls"] for g in by_week["groups"]) == 10

    intents = _get("analytics.get-v1-intents-summary.json", tenant, query=query).json()
    (group,) = intents["groups"]
    assert {i["name"]: i["count"] for i in group["items"]} == {"order_status": 10, "refund": 5}
    assert {i["name"]: i["rate"] for i in group["items"]}["refund"] == 0.25

    # Later changes are counted too, and folding the deltas in changes nothing.
    sql.execute("UPDATE calls SET disposition = 'resolved' WHERE call_id = %s", (seeded[1],))
    after = _get("analytics.get-v1-dispositions-summary.json", tenant, query=query).json()
    sql.execute("SELECT parley_compact_rollups()")
    compacted = _get("analytics.get-v1-dispositions-summary.json", tenant, query=query).json()
    assert after == compacted
    assert {i["name"]: i["count"] for i in after["groups"][0]["items"]}["resolved"] == 8


def test_latency_summary_per_agent(
    seeded: list[str], sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    for n, call_id in enumerate(seeded[:10]):
        sql.execute(
            "INSERT INTO call_latency (call_id, turn_index, voice_to_voice_ms) VALUES (%s, 0, %s)",
            (call_id, 500 + n * 100),  # support: 500,700,...,1300; sales: 600,...,1400
        )
    reply = _get(
        "analytics.get-v1-latency-summary.json",
        tenant,
        query={"start": "2026-11-01", "end": "2026-11-30"},
    )
    assert reply.status == 200
    agents = {a["agent_id"]: a for a in reply.json()["agents"]}
    assert agents["support"]["turns"] == 5
    assert agents["support"]["p50_ms"] == pytest.approx(900, rel=0.0125)
    assert agents["sales"]["p95_ms"] == pytest.approx(1400, rel=0.0125)
    assert agents["sales"]["p50_ms"] == pytest.approx(1000, rel=0.0125)


def test_summary_ranges_are_checked(rt: Any, tenant: Tenant) -> None:
    reversed_range = {"start": "2026-11-30", "end": "2026-11-01"}
    assert (
        _get("analytics.get-v1-dispositions-summary.json", tenant, query=reversed_range).status
        == 422
    )
    too_long = {"start": "2020-01-01", "end": "2026-11-01"}
    assert _get("analytics.get-v1-intents-summary.json", tenant, query=too_long).status == 422
    bad_group = {"group_by": "tenant"}
    assert _get("analytics.get-v1-dispositions-summary.json", tenant, query=bad_group).status == 422
    assert (
        _get("analytics.get-v1-latency-summary.json", tenant, query={"start": "not-a-date"}).status
        == 422
    )


def test_the_status_filter_knows_every_twilio_status() -> None:
    from typing import get_args

    from functions.analytics.filters import Status
    from shared.db.projection import STATUS_RANK

    assert set(get_args(Status)) == set(STATUS_RANK)


def test_the_scheduled_compaction_lambda_folds_deltas_without_changing_totals(
    seeded: list[str], sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    from functions.analytics.compaction import handler as compaction
    from tests.functions.conftest import _LOOP, LambdaContext

    query = {"start": "2026-11-01", "end": "2026-11-30", "group_by": "agent"}
    before = _get("analytics.get-v1-dispositions-summary.json", tenant, query=query).json()
    assert sql.execute("SELECT count(*) AS n FROM call_rollup_deltas").fetchone()["n"] > 0
    import asyncio

    asyncio.set_event_loop(_LOOP[0])
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    assert compaction(scheduled, LambdaContext()) == {"compacted": True}
    assert sql.execute("SELECT count(*) AS n FROM call_rollup_deltas").fetchone()["n"] == 0
    after = _get("analytics.get-v1-dispositions-summary.json", tenant, query=query).json()
    assert after == before


def test_cli_compact_rollups(seeded: list[str], sql: psycopg.Connection[Any]) -> None:
    from typer.testing import CliRunner

    from functions.cli import api_app

    result = CliRunner().invoke(api_app, ["compact-rollups"])
    assert result.exit_code == 0 and "compacted" in result.output, result.output
    assert sql.execute("SELECT count(*) AS n FROM call_rollup_deltas").fetchone()["n"] == 0


def test_a_local_recording_is_served_through_the_api_and_its_path_never_shown(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> None:
    call_id = f"rec-{uuid.uuid4().hex[:8]}"
    folder = rt.settings.data_dir / "recordings" / tenant.tenant_id
    folder.mkdir(parents=True)
    wav = folder / f"{call_id}.wav"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt fake audio")
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, recording_url) VALUES (%s, %s, %s)",
        (call_id, tenant.tenant_id, wav.resolve().as_uri()),
    )
    detail = _get("analytics.get-v1-calls-call_id.json", tenant, path=f"/v1/calls/{call_id}")
    link = detail.json()["recording_url"]
    assert (
        link == f"https://abc123.execute-api.us-east-1.amazonaws.com/v1/calls/{call_id}/recording"
    )
    assert str(rt.settings.data_dir) not in detail.body and "file:" not in detail.body
    sample = "analytics.get-v1-calls-call_id-recording.json"
    path = f"/v1/calls/{call_id}/recording"
    played = _get(sample, tenant, path=path)
    assert played.status == 200 and played.headers["content-type"] == "audio/wav"
    assert played.body.encode("latin-1") == wav.read_bytes()
    assert _get(sample, other_tenant, path=path).status == 404
    assert _get(sample, None, path=path).status == 401


def test_a_recording_outside_the_store_or_missing_is_a_404(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"not yours")
    sample = "analytics.get-v1-calls-call_id-recording.json"
    for stored in (outside.as_uri(), "file:///etc/passwd", None):
        call_id = f"rec-{uuid.uuid4().hex[:8]}"
        sql.execute(
            "INSERT INTO calls (call_id, tenant_id, recording_url) VALUES (%s, %s, %s)",
            (call_id, tenant.tenant_id, stored),
        )
        reply = _get(sample, tenant, path=f"/v1/calls/{call_id}/recording")
        assert reply.status == 404 and "no recording" in reply.json()["error"]["message"]


def _stereo_wav(caller: list[int], agent: list[int]) -> bytes:
    from media_nodes.recording.recorder import CallRecorder

    recorder = CallRecorder(8000)
    recorder.agent(np.array(agent, dtype=np.int16))  # the agent speaks first, from sample 0
    recorder.caller(np.array(caller, dtype=np.int16))
    return recorder.wav()


def _samples(body: bytes) -> tuple[int, list[int]]:
    with wave.open(io.BytesIO(body), "rb") as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return wav.getnchannels(), frames.tolist()


def test_a_recording_comes_stereo_or_mixed_to_mono(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    """Recordings keep caller and agent apart (left, right); ``channels=mono`` mixes them, and
    scales the mix down only where it would clip."""
    call_id = f"rec-{uuid.uuid4().hex[:8]}"
    folder = rt.settings.data_dir / "recordings" / tenant.tenant_id
    folder.mkdir(parents=True, exist_ok=True)
    wav_file = folder / f"{call_id}.wav"
    wav_file.write_bytes(_stereo_wav([100, -200, 300, 0], [1000, 0, -1000]))
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, recording_url) VALUES (%s, %s, %s)",
        (call_id, tenant.tenant_id, wav_file.resolve().as_uri()),
    )
    sample, path = "analytics.get-v1-calls-call_id-recording.json", f"/v1/calls/{call_id}/recording"
    stereo = _get(sample, tenant, path=path)
    assert _samples(stereo.raw) == (2, [100, 1000, -200, 0, 300, -1000, 0, 0])
    mixed = _get(sample, tenant, path=path, query={"channels": "mono"})
    assert mixed.status == 200 and mixed.headers["content-type"] == "audio/wav"
    assert _samples(mixed.raw) == (1, [1100, -200, -700, 0])
    loud = _stereo_wav([30000, -30000], [30000, 0])
    wav_file.write_bytes(loud)
    clipped = _samples(_get(sample, tenant, path=path, query={"channels": "mono"}).raw)
    assert clipped == (1, [32767, -16384])  # 60000 -> 32767, -30000 scaled by the same factor
    bad = _get(sample, tenant, path=path, query={"channels": "left"})
    assert bad.status == 422 and "channels" in bad.body


def test_a_mono_mix_of_an_s3_recording_is_served_by_the_api(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, monkeypatch: Any
) -> None:
    import boto3
    from moto import mock_aws

    from functions.analytics import recording

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    recording._s3.cache_clear()
    call_id = f"rec-{uuid.uuid4().hex[:8]}"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="parley-recordings")
        s3.put_object(
            Bucket="parley-recordings", Key=f"t/{call_id}.wav", Body=_stereo_wav([5, 6], [1, 1])
        )
        sql.execute(
            "INSERT INTO calls (call_id, tenant_id, recording_url) VALUES (%s, %s, %s)",
            (call_id, tenant.tenant_id, f"s3://parley-recordings/t/{call_id}.wav"),
        )
        reply = _get(
            "analytics.get-v1-calls-call_id-recording.json",
            tenant,
            path=f"/v1/calls/{call_id}/recording",
            query={"channels": "mono"},
        )
    recording._s3.cache_clear()
    assert reply.status == 200, reply.body
    assert _samples(reply.raw) == (1, [6, 7])
