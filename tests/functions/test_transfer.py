"""The transfer Lambda against an HTTP fake of Twilio's REST API that records each request."""

from __future__ import annotations

import base64
import csv
import io
import json
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlencode

import psycopg

from functions.analytics.app import handler as analytics
from functions.samples import HOST, SAMPLE_ACCOUNT_SID, SAMPLE_AUTH_TOKEN
from functions.transfer.app import handler
from functions.voice.app import handler as voice_handler
from shared.cache import NodeInfo
from tests.functions.conftest import (
    FakeTwilio,
    Tenant,
    api_event,
    call_sid,
    inbound_form,
    invoke,
    make_agent,
    phone,
    voice_event,
)

CALLS = f"/2010-04-01/Accounts/{SAMPLE_ACCOUNT_SID}/Calls"
BASIC = "Basic " + base64.b64encode(f"{SAMPLE_ACCOUNT_SID}:{SAMPLE_AUTH_TOKEN}".encode()).decode()


def _live_call(sql: psycopg.Connection[Any], tenant: Tenant, number: str, sid: str) -> str:
    row = sql.execute(
        """INSERT INTO calls (call_id, tenant_id, agent_id, twilio_call_sid, from_number, to_number,
               status, status_rank) VALUES (%s, %s, 'acme-shop', %s, '+15551230001', %s,
               'in-progress', 2) RETURNING call_id""",
        (f"call-{sid[-8:]}", tenant.tenant_id, sid, number),
    ).fetchone()
    return str(row["call_id"])


def _answered_stream_parameters(call_sid: str, number: str) -> dict[str, str | None]:
    """The callee answered: the parameters of the stream our voice webhook answers Twilio."""
    form = inbound_form(
        call_sid, "+15551230001", caller=number, Direction="outbound-api", CallStatus="in-progress"
    )
    answer = invoke(voice_handler, voice_event(form))
    stream = ET.fromstring(answer.body).find("./Connect/Stream")
    assert stream is not None, answer.body
    return {p.get("name"): p.get("value") for p in stream.findall("Parameter")}


def test_transfer_updates_the_live_call_with_dial_twiml(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    call_id = _live_call(sql, tenant, number, sid)
    reply = invoke(
        handler,
        api_event(
            "transfer.post-v1-calls-call_id-transfer.json",
            tenant,
            path=f"/v1/calls/{call_id}/transfer",
        ),
    )
    assert reply.status == 200, reply.body
    (request,) = fake_twilio.requests
    assert request.path == f"{CALLS}/{sid}.json"
    assert request.headers["authorization"] == BASIC
    assert [k for k, _ in request.form] == ["Twiml"]
    twiml = ET.fromstring(request.value("Twiml"))
    assert twiml.find("Say") is not None
    dial = twiml.find("Dial")
    assert dial is not None and dial.text == "+15550002222" and dial.get("callerId") == number
    row = sql.execute(
        "SELECT disposition, end_reason FROM calls WHERE call_id = %s", (call_id,)
    ).fetchone()
    assert row == {"disposition": "escalated_to_human", "end_reason": "transfer"}


def test_transfer_refuses_ended_and_foreign_calls_and_reports_twilio_errors(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    other_tenant: Tenant,
    fake_twilio: FakeTwilio,
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    call_id = _live_call(sql, tenant, number, call_sid())

    def transfer(who: Tenant, body: Any = None) -> Any:
        return invoke(
            handler,
            api_event(
                "transfer.post-v1-calls-call_id-transfer.json",
                who,
                path=f"/v1/calls/{call_id}/transfer",
                body=body,
            ),
        )

    assert transfer(other_tenant).status == 404
    assert transfer(tenant, {"target": "my boss"}).status == 422
    fake_twilio.fail_with = 400
    failed = transfer(tenant)
    assert failed.status == 502 and "Twilio answered 400" in failed.json()["error"]["message"]
    fake_twilio.fail_with = None
    sql.execute(
        "UPDATE calls SET status = 'completed', status_rank = 3 WHERE call_id = %s", (call_id,)
    )
    assert transfer(tenant).status == 409
    assert len(fake_twilio.requests) == 1  # only the one that Twilio refused


def test_outbound_call_points_twilio_at_our_webhooks_and_the_answer_streams(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    fake_twilio: FakeTwilio,
    node: NodeInfo,
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    event = api_event("transfer.post-v1-calls-outbound.json", tenant, stage="prod")
    reply = invoke(handler, event)
    assert reply.status == 201, reply.body
    placed = reply.json()
    assert placed["twilio_call_sid"] == fake_twilio.next_sid and placed["status"] == "queued"
    (request,) = fake_twilio.requests
    assert request.path == f"{CALLS}.json" and request.headers["authorization"] == BASIC
    assert request.value("To") == "+15551230001" and request.value("From") == number
    assert request.value("Url") == f"https://{HOST}/prod/twilio/voice"
    assert request.value("Method") == "POST"
    assert request.value("StatusCallback") == f"https://{HOST}/prod/twilio/status"
    assert request.values("StatusCallbackEvent") == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    row = sql.execute(
        "SELECT * FROM calls WHERE twilio_call_sid = %s", (placed["twilio_call_sid"],)
    ).fetchone()
    assert (row["call_id"], row["direction"], row["agent_id"]) == (
        placed["call_id"],
        "outbound-api",
        "acme-shop",
    )

    # When the callee answers, Twilio fetches TwiML from our voice webhook for the same CallSid.
    params = _answered_stream_parameters(placed["twilio_call_sid"], number)
    assert params["call_id"] == placed["call_id"] and params["agent_id"] == "acme-shop"


def test_outbound_needs_a_routed_number_and_an_active_agent(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    def outbound(body: Any = None) -> Any:
        return invoke(handler, api_event("transfer.post-v1-calls-outbound.json", tenant, body=body))

    assert outbound().status == 404
    make_agent(sql, tenant.tenant_id)
    assert outbound().status == 409
    assert outbound({"agent_id": "acme-shop", "to": "not a number"}).status == 422
    assert fake_twilio.requests == []


def test_without_twilio_credentials_outbound_says_what_is_missing(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    make_agent(sql, tenant.tenant_id, number=phone())
    rt._settings = rt.settings.model_copy(update={"twilio_account_sid": ""})
    reply = invoke(handler, api_event("transfer.post-v1-calls-outbound.json", tenant))
    assert reply.status == 503 and "PARLEY_TWILIO_ACCOUNT_SID" in reply.json()["error"]["message"]


def test_dial_twiml_knows_numbers_from_sip_uris() -> None:
    from shared.twilio_rest import dial_twiml

    number = dial_twiml("+15550100200", message="One moment.", caller_id="+15550100123")
    assert "<Say>One moment.</Say>" in number
    assert '<Dial callerId="+15550100123">+15550100200</Dial>' in number
    sip = dial_twiml("sip:desk@pbx.example.com")
    assert "<Dial><Sip>sip:desk@pbx.example.com</Sip></Dial>" in sip


def test_forwarded_host_and_proto_count_only_from_a_trusted_proxy(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    fake_twilio: FakeTwilio,
) -> None:
    make_agent(sql, tenant.tenant_id, number=phone())
    forged = {"x-forwarded-host": "evil.example.com", "x-forwarded-proto": "https"}

    def placed_url() -> str:
        event = api_event("transfer.post-v1-calls-outbound.json", tenant, headers=forged)
        reply = invoke(handler, event)
        assert reply.status == 201, reply.body
        return fake_twilio.requests[-1].value("Url")

    # No proxy configured: the Host API Gateway routed on; the scheme API Gateway wrote.
    assert placed_url() == f"https://{HOST}/twilio/voice"
    # The sample event's peer (API Gateway's sourceIp) is 203.0.113.10.
    rt._settings = rt.settings.model_copy(update={"trusted_proxies": ["198.51.100.0/24"]})
    assert placed_url() == f"https://{HOST}/twilio/voice"
    rt._settings = rt.settings.model_copy(update={"trusted_proxies": ["203.0.113.0/24"]})
    assert placed_url() == "https://evil.example.com/twilio/voice"


def test_trusted_proxies_must_be_addresses_or_networks(settings: Any) -> None:
    import pytest
    from pydantic import ValidationError

    from functions.common.config import FunctionSettings

    assert FunctionSettings(trusted_proxies=["10.0.0.0/8", "::1"]).trusted_proxies == [
        "10.0.0.0/8",
        "::1",
    ]
    with pytest.raises(ValidationError, match="not an IP address or CIDR"):
        FunctionSettings(trusted_proxies=["proxy.example.com"])


def test_an_unreachable_twilio_is_reported_with_the_connection_error() -> None:
    import requests

    from shared.twilio_rest import failed

    refused = requests.ConnectionError(
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded "
        "(Caused by NewConnectionError('Connection refused'))"
    )
    message = str(failed(refused))
    assert message.startswith("Twilio could not be reached: ConnectionError: ")
    assert "Connection refused" in message
    assert str(failed(TimeoutError())) == "Twilio could not be reached: TimeoutError"
    assert len(str(failed(OSError("x" * 5000)))) < 400  # bounded: it is stored per attempt


def _outbound(tenant: Tenant, body: dict[str, Any]) -> Any:
    sample = json.loads(api_event("transfer.post-v1-calls-outbound.json", tenant)["body"])
    event = api_event("transfer.post-v1-calls-outbound.json", tenant, body={**sample, **body})
    return invoke(handler, event)


def test_outbound_metadata_is_kept_shown_and_filterable_and_variables_reach_the_agent(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    other_tenant: Tenant,
    fake_twilio: FakeTwilio,
    node: NodeInfo,
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    metadata = {"order_id": "A-1042", "crm.contact": "003xx000004TmiQ", "note": "=1+1"}
    variables = {"first_name": "Ann", "appointment": "Tuesday 3 pm"}
    reply = _outbound(tenant, {"metadata": metadata, "variables": variables})
    assert reply.status == 201, reply.body
    placed = reply.json()
    # Neither reaches Twilio: they stay with us.
    (request,) = fake_twilio.requests
    assert "A-1042" not in str(request.form) and "Ann" not in str(request.form)

    params = _answered_stream_parameters(placed["twilio_call_sid"], number)
    assert params["first_name"] == "Ann" and params["appointment"] == "Tuesday 3 pm"
    assert params["call_id"] == placed["call_id"]
    assert "order_id" not in params  # metadata is the client's, never the agent's

    def get(path: str, query: list[tuple[str, str]] | None = None, who: Tenant = tenant) -> Any:
        event = api_event("analytics.get-v1-calls.json", who, path=path)
        event["rawQueryString"] = urlencode(query or [])
        event["queryStringParameters"] = dict(query or []) or None
        return invoke(analytics, event)

    detail = get(f"/v1/calls/{placed['call_id']}")
    assert detail.status == 200 and detail.json()["metadata"] == metadata

    def listed(*filters: str, who: Tenant = tenant) -> list[str]:
        page = get("/v1/calls", [("metadata", f) for f in filters], who)
        assert page.status == 200, page.body
        return [c["call_id"] for c in page.json()["items"]]

    assert listed("order_id:A-1042") == [placed["call_id"]]
    assert listed("order_id") == [placed["call_id"]]
    assert listed("order_id:A-1042", "crm.contact:003xx000004TmiQ") == [placed["call_id"]]
    assert listed("order_id:A-1043") == []
    assert listed("order_id:A-1042", "missing") == []
    assert listed("order_id:A-1042", who=other_tenant) == []
    page = get("/v1/calls", [("metadata", "order_id:A-1042")])
    assert page.json()["items"][0]["metadata"] == metadata
    bad = get("/v1/calls", [("metadata", "no spaces:x")])
    assert bad.status == 422 and "KEY" in bad.json()["error"]["message"]

    exported = get("/v1/calls/export", [("metadata", "order_id:A-1042"), ("format", "jsonl")])
    (record,) = [json.loads(line) for line in exported.body.splitlines()]
    assert record["metadata"] == metadata
    table = get("/v1/calls/export", [("metadata", "note:=1+1"), ("format", "csv")])
    (row,) = list(csv.DictReader(io.StringIO(table.body)))
    assert json.loads(row["metadata"]) == metadata  # JSON text: no spreadsheet formula
    listed_csv = get("/v1/calls", [("metadata", "order_id"), ("format", "csv")])
    (row,) = list(csv.DictReader(io.StringIO(listed_csv.body)))
    assert json.loads(row["metadata"]) == metadata


def test_outbound_metadata_and_variables_out_of_bounds_are_refused_with_the_reason(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    make_agent(sql, tenant.tenant_id, number=phone())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"metadata": {f"k{i}": "v" for i in range(51)}}, "at most 50 keys"),
        ({"metadata": {"has space": "v"}}, "does not match"),
        ({"metadata": {"k" * 41: "v"}}, "does not match"),
        ({"metadata": {"order": "x" * 501}}, "longer than 500"),
        ({"metadata": {"order": 42}}, "valid string"),
        ({"metadata": ["order"]}, "valid dictionary"),
        ({"variables": {"call_id": "mine"}}, "reserved"),
        ({"variables": {"First": "Ann"}}, "lower_snake_case"),
        ({"variables": {"note": "x" * 501}}, "longer than 500"),
        ({"variables": {f"v{i}": "x" for i in range(51)}}, "at most 50 variables"),
    ]
    for body, reason in cases:
        reply = _outbound(tenant, body)
        assert reply.status == 422, (body, reply.body)
        assert reason in reply.body, (reason, reply.body)
    assert fake_twilio.requests == []  # nothing was dialled for a refused request
    # At the bounds: accepted.
    full = {f"k{i}": "v" * 500 for i in range(50)}
    assert _outbound(tenant, {"metadata": full}).status == 201


def test_metadata_of_a_call_the_voice_webhook_recorded_first_is_added_not_lost(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = fake_twilio.next_sid

    def answered_at_once(request: Any) -> None:
        # The callee answered before Twilio's reply reached us: the voice webhook's row exists.
        with psycopg.connect(sql.info.dsn, autocommit=True) as other:
            other.execute(
                "INSERT INTO calls (call_id, tenant_id, agent_id, twilio_call_sid, from_number, "
                "to_number, direction, status, status_rank, metadata) VALUES (%s, %s, "
                "'acme-shop', %s, %s, '+15551230001', 'outbound-api', 'in-progress', 2, "
                """'{"order_id": "kept"}')""",
                (f"call_{sid[-12:]}", tenant.tenant_id, sid, number),
            )

    fake_twilio.before_reply = answered_at_once
    reply = _outbound(
        tenant, {"metadata": {"order_id": "new", "batch": "7"}, "variables": {"a": "b"}}
    )
    assert reply.status == 201, reply.body
    row = sql.execute(
        "SELECT call_id, metadata, variables FROM calls WHERE twilio_call_sid = %s", (sid,)
    ).fetchone()
    assert row["call_id"] == reply.json()["call_id"]
    assert row["metadata"] == {"order_id": "kept", "batch": "7"}  # a record only grows
    assert row["variables"] == {"a": "b"}
