"""GET /v1/calls/export: every matching row streamed as CSV or JSON lines, with slots,
transcript, recording link and CallSid; Accept negotiated (406 for what is not served); the
list's Accept honoured the same way. Real PostgreSQL; the streaming check runs the local server
on a real port."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from functions.analytics.app import handler as analytics
from functions.analytics.export import BATCH, COLUMNS
from functions.common.negotiate import choose
from tests.functions.conftest import Tenant, api_event, invoke


def _get(path: str, tenant: Tenant, accept: str | None, **query: str) -> Any:
    event = api_event("analytics.get-v1-calls.json", tenant, path=path, query=query)
    if accept is None:
        event["headers"].pop("accept", None)
    else:
        event["headers"]["accept"] = accept
    return invoke(analytics, event)


def _calls(sql: psycopg.Connection[Any], tenant_id: str) -> dict[str, str]:
    """Three calls: one with everything, one bare, one escalated; ids by role."""
    tag = uuid.uuid4().hex[:8]
    ids = {"full": f"ex-{tag}-1", "bare": f"ex-{tag}-2", "escalated": f"ex-{tag}-3"}
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, agent_id, twilio_call_sid, from_number, "
        "to_number, status, started_at, ended_at, duration_ms, end_reason, disposition, summary, "
        "slots, intents, recording_url, asr_audio_ms, tts_chars, llm_tokens) VALUES "
        "(%s, %s, 'acme-shop', %s, '+15550001111', '+15550002222', 'completed', "
        "'2026-11-20T10:00:00Z', '2026-11-20T10:01:00Z', 60000, 'hangup', 'resolved', "
        "'=HYPERLINK(\"x\") order found', %s, ARRAY['order_status'], 's3://bucket/rec.wav', "
        "20000, 300, 1500)",
        (ids["full"], tenant_id, "CA" + tag * 4, Jsonb({"order_id": "A-17", "city": "Paris"})),
    )
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, started_at) VALUES (%s, %s, '2026-11-21T10:00Z')",
        (ids["bare"], tenant_id),
    )
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, agent_id, started_at, disposition) "
        "VALUES (%s, %s, 'acme-shop', '2026-11-22T10:00Z', 'escalated_to_human')",
        (ids["escalated"], tenant_id),
    )
    for speaker, index, text, start in (
        ("agent", 0, "Hello, Acme here.", 0),
        ("caller", 0, "Where is my order, A-17?", 1500),
        ("agent", 1, "It ships today.", 4000),
    ):
        sql.execute(
            "INSERT INTO call_turns (call_id, speaker, turn_index, text, start_ms, end_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (ids["full"], speaker, index, text, start, start + 1000),
        )
    return ids


def test_accept_negotiation() -> None:
    offers = ("text/csv", "application/x-ndjson")
    assert choose(None, offers) == "text/csv"
    assert choose("*/*", offers) == "text/csv"
    assert choose("application/x-ndjson", offers) == "application/x-ndjson"
    assert choose("text/csv;q=0.2, application/x-ndjson;q=0.9", offers) == "application/x-ndjson"
    assert choose("application/*, text/csv;q=0.5", offers) == "application/x-ndjson"
    assert choose("text/*;q=0.1, */*;q=0.5", offers) == "application/x-ndjson"  # specific wins
    for refused in ("application/json", "application/xml", "text/csv;q=0, text/html", "x"):
        try:
            choose(refused, offers)
        except Exception as exc:
            assert getattr(exc, "status", None) == 406, refused
        else:
            raise AssertionError(f"{refused} was served")


def test_export_streams_every_matching_call_with_slots_transcript_recording_and_call_sid(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> None:
    ids = _calls(sql, tenant.tenant_id)
    _calls(sql, other_tenant.tenant_id)

    reply = _get("/v1/calls/export", tenant, "text/csv")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.body)))
    assert list(rows[0]) == COLUMNS
    assert [r["call_id"] for r in rows] == [
        ids["full"],
        ids["bare"],
        ids["escalated"],
    ]  # oldest first
    full = rows[0]
    assert full["twilio_call_sid"].startswith("CA")
    assert json.loads(full["slots"]) == {"city": "Paris", "order_id": "A-17"}
    assert full["transcript"] == (
        "agent: Hello, Acme here.\ncaller: Where is my order, A-17?\nagent: It ships today."
    )
    assert full["recording_url"].endswith(f"/v1/calls/{ids['full']}/recording")
    assert full["summary"].startswith("'=HYPERLINK")  # not a formula in a spreadsheet
    assert full["minutes"] == "1.0" and full["llm_tokens"] == "1500"
    assert rows[1]["recording_url"] == "" and rows[1]["transcript"] == ""

    lines = _get("/v1/calls/export", tenant, "application/x-ndjson").body.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["call_id"] for r in records] == [ids["full"], ids["bare"], ids["escalated"]]
    assert records[0]["transcript"][1] == {
        "speaker": "caller", "text": "Where is my order, A-17?", "start_ms": 1500, "end_ms": 2500,
    }  # fmt: skip
    assert records[0]["slots"] == {"city": "Paris", "order_id": "A-17"}
    assert records[0]["summary"].startswith("=HYPERLINK")  # JSON needs no escaping
    assert records[1]["transcript"] == [] and records[1]["recording_url"] is None

    # The list's filters, the same mechanism.
    escalated = _get("/v1/calls/export", tenant, None, format="jsonl", escalated="true")
    assert [json.loads(x)["call_id"] for x in escalated.body.splitlines()] == [ids["escalated"]]
    assert _get("/v1/calls/export", tenant, None, disposition="nope").body.splitlines() == [
        ",".join(COLUMNS)
    ]


def test_what_is_not_served_is_a_406(rt: Any, tenant: Tenant) -> None:
    for accept in ("application/json", "application/xml", "text/html", "text/csv;q=0"):
        reply = _get("/v1/calls/export", tenant, accept)
        assert reply.status == 406, (accept, reply.status)
        assert reply.json()["error"]["code"] == "not_acceptable"
        assert "text/csv" in reply.json()["error"]["message"]
    assert _get("/v1/calls/export", tenant, "*/*").headers["content-type"].startswith("text/csv")
    assert _get("/v1/calls/export", tenant, "application/xml", format="jsonl").status == 200
    assert _get("/v1/calls/export", tenant, None, format="xml").status == 422
    # The page list serves JSON and CSV, and refuses the rest too.
    assert _get("/v1/calls", tenant, "application/xml").status == 406
    assert _get("/v1/calls", tenant, "text/csv").headers["content-type"].startswith("text/csv")
    assert _get("/v1/calls", tenant, "text/csv, application/json").json()["items"] is not None
    assert _get("/v1/calls", tenant, None).json()["items"] is not None
    assert _get("/v1/calls/aggregate", tenant, "text/csv").status == 406
    assert _get("/v1/calls/aggregate", tenant, "application/*").status == 200


def test_a_large_export_streams_across_batches(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, live_api: str
) -> None:
    n = BATCH * 2 + 17
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, started_at, disposition) "
        "SELECT %s || lpad(g::text, 6, '0'), %s, now() - g * interval '1 second', 'resolved' "
        "FROM generate_series(1, %s) g",
        (f"big-{uuid.uuid4().hex[:6]}-", tenant.tenant_id, n),
    )
    chunks = 0
    with httpx.stream(
        "GET",
        f"{live_api}/v1/calls/export",
        headers={"Authorization": tenant.auth, "Accept": "application/x-ndjson"},
        timeout=30,
    ) as reply:
        assert reply.status_code == 200
        assert "content-length" not in reply.headers  # streamed, not built whole
        body = b""
        for chunk in reply.iter_bytes():
            chunks += 1
            body += chunk
    seen = [json.loads(line)["call_id"] for line in body.splitlines()]
    assert len(seen) == n == len(set(seen))
    assert seen == sorted(seen, reverse=True)  # oldest first: the highest g started earliest
    assert chunks >= 2
