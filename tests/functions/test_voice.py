"""The voice Lambda invoked with API Gateway events: signatures, routing, idempotency, status."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import psycopg
import pytest

from functions.analytics.app import handler as analytics_handler
from functions.samples import SAMPLE_CALL_SID, load_sample, twilio_event
from functions.voice.app import handler
from shared.cache import NodeInfo
from shared.cache.streams import StreamClaims
from shared.tokens import verify
from tests.functions.conftest import (
    Tenant,
    api_event,
    call_sid,
    inbound_form,
    invoke,
    make_agent,
    phone,
    voice_event,
)

ROOT = Path(__file__).resolve().parents[2]


def _calls(sql: psycopg.Connection[Any], sid: str) -> list[dict[str, Any]]:
    return sql.execute("SELECT * FROM calls WHERE twilio_call_sid = %s", (sid,)).fetchall()


def test_sample_event_answers_with_a_stream_to_the_picked_node(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, node: NodeInfo
) -> None:
    sql.execute("DELETE FROM calls WHERE twilio_call_sid = %s", (SAMPLE_CALL_SID,))
    sql.execute("DELETE FROM phone_numbers WHERE number = '+15559870000'")
    make_agent(sql, tenant.tenant_id, number="+15559870000")

    reply = invoke(handler, load_sample("voice.post-twilio-voice.json"))

    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/xml")
    stream = ET.fromstring(reply.body).find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://media-a.example.com/twilio/stream"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    (row,) = _calls(sql, SAMPLE_CALL_SID)
    assert params["call_id"] == row["call_id"]
    assert params["agent_id"] == "acme-shop" and params["tenant_id"] == tenant.tenant_id
    assert (params["from"], params["to"], params["record"]) == (
        "+15551230001",
        "+15559870000",
        "false",
    )
    claims = verify(params["token"], secret="test-session-secret")
    assert (claims.call_id, claims.tenant_id, claims.agent_id) == (
        row["call_id"],
        tenant.tenant_id,
        "acme-shop",
    )
    assert row["tenant_id"] == tenant.tenant_id and row["agent_version"] == 1
    assert (row["from_number"], row["to_number"]) == ("+15551230001", "+15559870000")
    assert row["node_id"] == "node-a" and row["status"] == "ringing"
    sql.execute("DELETE FROM phone_numbers WHERE number = '+15559870000'")


def test_a_retried_webhook_reuses_the_call_row(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, node: NodeInfo
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    event = voice_event(inbound_form(sid, number))
    first, second = invoke(handler, event), invoke(handler, event)
    assert first.status == second.status == 200
    rows = _calls(sql, sid)
    assert len(rows) == 1
    assert (
        f'value="{rows[0]["call_id"]}"' in first.body
        and f'value="{rows[0]["call_id"]}"' in second.body
    )


def test_an_invalid_signature_is_refused_and_writes_nothing(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, node: NodeInfo
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    event = voice_event(inbound_form(sid, number))
    forged = dict(event, body=event["body"].replace("ringing", "in-progress"))
    wrong_key = voice_event(inbound_form(sid, number), token="not-the-auth-token")
    unsigned = voice_event(inbound_form(sid, number))
    del unsigned["headers"]["x-twilio-signature"]

    for bad in (forged, wrong_key, unsigned):
        reply = invoke(handler, bad)
        assert reply.status == 403
        assert reply.json()["error"]["code"] == "forbidden"
    status = invoke(
        handler,
        voice_event(
            inbound_form(sid, number, CallStatus="completed"), path="/twilio/status", token="forged"
        ),
    )
    assert status.status == 403
    assert _calls(sql, sid) == []
    assert (
        sql.execute(
            "SELECT count(*) AS n FROM call_status_events WHERE call_sid = %s", (sid,)
        ).fetchone()["n"]
        == 0
    )


def test_the_signed_url_is_rebuilt_with_scheme_host_and_stage(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, node: NodeInfo
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    form = inbound_form(call_sid(), number)
    # Signed for the $default stage (no /prod prefix) and routed without a stage: valid.
    assert invoke(handler, voice_event(form, stage="$default")).status == 200
    # Signed for https://host/prod/...: delivered over a proxy that says http -> the URL differs.
    event = voice_event(inbound_form(call_sid(), number))
    event["headers"]["x-forwarded-proto"] = "http"
    assert invoke(handler, event).status == 403
    # Signed for /prod/twilio/voice but API Gateway reports stage "dev": different URL.
    event = voice_event(inbound_form(call_sid(), number))
    event["requestContext"]["stage"] = "dev"
    event["rawPath"] = "/dev/twilio/voice"
    event["requestContext"]["http"]["path"] = "/dev/twilio/voice"
    assert invoke(handler, event).status == 403
    # Another host than the one Twilio signed for.
    event = voice_event(inbound_form(call_sid(), number), host="evil.example.com")
    event["headers"]["host"] = "api.example.com"
    assert invoke(handler, event).status == 403


def test_an_unknown_number_gets_a_polite_hangup_recorded_with_a_disposition(
    rt: Any, sql: psycopg.Connection[Any], node: NodeInfo
) -> None:
    sid = call_sid()
    reply = invoke(handler, voice_event(inbound_form(sid, phone())))
    assert reply.status == 200
    root = ET.fromstring(reply.body)
    assert root.find("Say") is not None and root.find("Hangup") is not None
    assert root.find("Connect") is None
    (row,) = _calls(sql, sid)
    assert (row["tenant_id"], row["disposition"], row["end_reason"]) == (
        "_unrouted",
        "failed",
        "unknown_number",
    )


def test_no_capacity_hangs_up_politely_or_overflows(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    reply = invoke(handler, voice_event(inbound_form(sid, number)))
    root = ET.fromstring(reply.body)
    assert root.find("Say") is not None and root.find("Hangup") is not None
    (row,) = _calls(sql, sid)
    assert (row["disposition"], row["end_reason"]) == ("failed", "no_capacity")

    sql.execute(
        """UPDATE tenants SET settings = settings || '{"overflow_number": "+15550009999"}'
           WHERE tenant_id = %s""",
        (tenant.tenant_id,),
    )
    sid = call_sid()
    root = ET.fromstring(invoke(handler, voice_event(inbound_form(sid, number))).body)
    dial = root.find("Dial")
    assert dial is not None and dial.text == "+15550009999" and dial.get("callerId") == number
    (row,) = _calls(sql, sid)
    assert (row["disposition"], row["end_reason"]) == ("escalated_to_human", "overflow")


def test_full_or_draining_nodes_are_not_picked(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, heartbeat: Any
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    heartbeat(NodeInfo("full", "wss://full", capacity=2, active_calls=2))
    heartbeat(NodeInfo("drain", "wss://drain", capacity=9, active_calls=0, draining=True))
    root = ET.fromstring(invoke(handler, voice_event(inbound_form(call_sid(), number))).body)
    assert root.find("Connect") is None and root.find("Hangup") is not None
    heartbeat(NodeInfo("busy", "wss://busy", capacity=10, active_calls=8))
    heartbeat(NodeInfo("idle", "wss://idle", capacity=10, active_calls=1))
    root = ET.fromstring(invoke(handler, voice_event(inbound_form(call_sid(), number))).body)
    assert root.find("./Connect/Stream").get("url") == "wss://idle/twilio/stream"


def test_status_callbacks_are_idempotent_and_never_move_a_call_back(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, node: NodeInfo
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    invoke(handler, voice_event(inbound_form(sid, number)))

    def status(value: str, **extra: str) -> int:
        form = inbound_form(sid, number, CallStatus=value, **extra)
        return invoke(handler, voice_event(form, path="/twilio/status")).status

    assert status("in-progress", SequenceNumber="1") == 204
    assert (
        status(
            "completed",
            CallDuration="42",
            SequenceNumber="2",
            Timestamp="Sat, 28 Nov 2026 15:00:42 +0000",
        )
        == 204
    )
    assert status("completed", CallDuration="42", SequenceNumber="2") == 204  # duplicate
    assert status("ringing", SequenceNumber="0") == 204  # late, out of order
    (row,) = _calls(sql, sid)
    assert (row["status"], row["status_rank"], row["duration_ms"]) == ("completed", 3, 42_000)
    assert (
        row["answered_at"] is not None
        and row["ended_at"].isoformat() == "2026-11-28T15:00:42+00:00"
    )
    history = sql.execute(
        "SELECT status FROM call_status_events WHERE call_sid = %s ORDER BY status", (sid,)
    ).fetchall()
    assert [h["status"] for h in history] == ["completed", "in-progress", "ringing"]


def test_the_status_sample_event_is_accepted(rt: Any, sql: psycopg.Connection[Any]) -> None:
    assert invoke(handler, load_sample("voice.post-twilio-status.json")).status == 204


def test_malformed_webhooks_get_clear_errors(rt: Any, sql: psycopg.Connection[Any]) -> None:
    bad_status = voice_event(
        inbound_form(call_sid(), phone(), CallStatus="exploded"), path="/twilio/status"
    )
    reply = invoke(handler, bad_status)
    assert reply.status == 422 and "CallStatus" in reply.json()["error"]["message"]
    no_sid = voice_event({"From": "+15551230001", "To": "+15559870000"})
    assert invoke(handler, no_sid).status == 422
    as_json = voice_event(inbound_form(call_sid(), phone()))
    as_json["headers"]["content-type"] = "application/json"
    assert invoke(handler, as_json).status == 415


def test_a_sample_signed_for_another_path_is_refused(rt: Any) -> None:
    event = twilio_event("/twilio/voice", inbound_form(call_sid(), phone()))
    event["rawPath"] = "/prod/twilio/status"
    event["requestContext"]["http"]["path"] = "/prod/twilio/status"
    assert invoke(handler, event).status == 403


def test_a_retry_that_finds_capacity_clears_the_earlier_no_capacity_outcome(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, heartbeat: Any
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    event = voice_event(inbound_form(sid, number))
    assert ET.fromstring(invoke(handler, event).body).find("Hangup") is not None
    heartbeat(NodeInfo("late", "wss://late", capacity=1, active_calls=0))
    assert ET.fromstring(invoke(handler, event).body).find("./Connect/Stream") is not None
    (row,) = _calls(sql, sid)
    assert (row["node_id"], row["disposition"], row["end_reason"]) == ("late", None, None)


def test_a_base64_encoded_form_body_is_decoded_before_the_signature_check(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, node: NodeInfo
) -> None:
    """API Gateway HTTP APIs may deliver form bodies base64-encoded."""
    import base64

    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    event = voice_event(inbound_form(sid, number))
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    reply = invoke(handler, event)
    assert reply.status == 200 and "<Stream" in reply.body
    assert len(_calls(sql, sid)) == 1


def test_an_unreachable_registry_gets_the_polite_busy_answer(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    rt._settings = rt.settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    sid = call_sid()
    reply = invoke(handler, voice_event(inbound_form(sid, number)))
    assert reply.status == 200 and ET.fromstring(reply.body).find("Hangup") is not None
    (row,) = _calls(sql, sid)
    assert row["end_reason"] == "no_capacity"


def _status(sid: str, number: str, value: str, **extra: str) -> int:
    form = inbound_form(sid, number, CallStatus=value, **extra)
    return invoke(handler, voice_event(form, path="/twilio/status")).status


def test_late_status_callbacks_stay_out_of_the_visible_history(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, node: NodeInfo
) -> None:
    """Twilio's own order decides: after `completed`, a late `in-progress` only says when the
    call was answered and a late `busy` changes nothing; both are kept for audit, not shown."""
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    invoke(handler, voice_event(inbound_form(sid, number)))
    stamp = "Sat, 28 Nov 2026 15:00:{:02d} +0000".format
    assert _status(sid, number, "ringing", SequenceNumber="0", Timestamp=stamp(1)) == 204
    assert (
        _status(
            sid, number, "completed", SequenceNumber="2", Timestamp=stamp(42), CallDuration="40"
        )
        == 204
    )
    assert _status(sid, number, "in-progress", SequenceNumber="1", Timestamp=stamp(2)) == 204
    assert _status(sid, number, "busy", SequenceNumber="3", Timestamp=stamp(43)) == 204

    (row,) = _calls(sql, sid)
    assert (row["status"], row["end_reason"], row["duration_ms"]) == ("completed", None, 40_000)
    assert row["answered_at"].isoformat() == "2026-11-28T15:00:02+00:00"
    reply = invoke(
        analytics_handler,
        api_event(
            "analytics.get-v1-calls-call_id.json", tenant, path=f"/v1/calls/{row['call_id']}"
        ),
    )
    assert reply.status == 200, reply.body
    assert [h["status"] for h in reply.json()["status_history"]] == ["ringing", "completed"]
    audit = sql.execute(
        "SELECT status FROM call_status_events WHERE call_sid = %s ORDER BY sequence_number",
        (sid,),
    ).fetchall()
    assert [a["status"] for a in audit] == ["ringing", "in-progress", "completed", "busy"]


def test_status_callbacks_for_an_unknown_call_store_nothing(
    rt: Any, sql: psycopg.Connection[Any]
) -> None:
    sid = call_sid()
    assert _status(sid, phone(), "completed", SequenceNumber="4", CallDuration="9") == 204
    assert _calls(sql, sid) == []
    stored = sql.execute(
        "SELECT count(*) AS n FROM call_status_events WHERE call_sid = %s", (sid,)
    ).fetchone()
    assert stored["n"] == 0


def test_a_webhook_for_a_call_that_already_streamed_gets_no_token(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, node: NodeInfo
) -> None:
    """A replayed (validly signed) webhook of a call that has its stream, or is over: a hang-up,
    no session token, and the call row exactly as it was."""
    number = make_agent(sql, tenant.tenant_id, number=phone())
    for settle in (
        "UPDATE calls SET stream_sid = 'MZ' || md5(call_id) WHERE twilio_call_sid = %s",
        "UPDATE calls SET status = 'completed', status_rank = 3 WHERE twilio_call_sid = %s",
    ):
        sid = call_sid()
        event = voice_event(inbound_form(sid, number))
        assert "token" in invoke(handler, event).body
        sql.execute(settle, (sid,))
        (before,) = _calls(sql, sid)

        replay = invoke(handler, event)

        assert replay.status == 200 and replay.headers["content-type"].startswith("application/xml")
        answer = ET.fromstring(replay.body)
        assert answer.find("./Connect") is None and answer.find("./Hangup") is not None
        assert "token" not in replay.body
        assert _calls(sql, sid) == [before]


def test_a_webhook_retry_after_the_node_took_the_stream_gets_no_token(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, node: NodeInfo, run: Any
) -> None:
    """The stream started but its events are not in the database yet: the node's claim (in
    Redis, shared with the webhook) is enough to refuse a second token."""
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    event = voice_event(inbound_form(sid, number))
    first = invoke(handler, event)
    (row,) = _calls(sql, sid)

    async def take_the_stream() -> bool:
        return await StreamClaims(rt.cache()).claim(row["call_id"], "MZ" + "1" * 32)

    assert run(take_the_stream())

    again = invoke(handler, event)

    assert "token" in first.body and "token" not in again.body
    assert ET.fromstring(again.body).find("./Hangup") is not None


def test_the_webhooks_emit_the_metrics_the_functions_dashboard_reads(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Lambdas' metrics are CloudWatch embedded metrics in their stdout: every CloudWatch
    query of the functions dashboard names a metric, namespace and dimensions they emit."""
    capsys.readouterr()
    for path in ("/twilio/voice", "/twilio/status"):
        form = inbound_form(call_sid(), phone(), CallStatus="completed")
        assert invoke(handler, voice_event(form, path=path, token="forged")).status == 403
        assert invoke(handler, voice_event(form, path=path)).status in (200, 204)
    number = make_agent(sql, tenant.tenant_id, number=phone())
    assert invoke(handler, voice_event(inbound_form(call_sid(), number))).status == 200  # no node
    emitted: set[tuple[str, str, frozenset[tuple[str, str]]]] = set()
    for line in capsys.readouterr().out.splitlines():
        blob = json.loads(line) if line.startswith("{") else {}
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            for dimensions in directive["Dimensions"]:
                values = frozenset((d, blob[d]) for d in dimensions)
                for metric in directive["Metrics"]:
                    emitted.add((directive["Namespace"], metric["Name"], values))
    names = {name for _, name, _ in emitted}
    assert {"Requests", "LatencyMs", "ClientErrors", "UnknownNumber", "NoCapacity"} <= names

    dashboard = json.loads((ROOT / "infra/observability/grafana/parley-functions.json").read_text())
    queried = [
        (t["namespace"], t["metricName"], frozenset(t["dimensions"].items()))
        for panel in dashboard["panels"]
        for t in panel["targets"]
        if t["datasource"]["type"] == "cloudwatch"
    ]
    assert queried
    # ServerErrors comes from the line that counts ClientErrors, on a 5xx, which these requests
    # never are: its dimensions are checked, not its name.
    for namespace, metric, dimensions in queried:
        if metric == "ServerErrors":
            assert (namespace, "ClientErrors", dimensions) in emitted, dict(dimensions)
            continue
        assert (namespace, metric, dimensions) in emitted, (metric, dict(dimensions), emitted)
