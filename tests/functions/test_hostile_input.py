"""Hostile input against ``parley api serve`` on a real port and the real PostgreSQL: NUL bytes,
lone surrogates, deep nesting and extreme dates get a 4xx in the one error shape (never a 500 or
a dropped connection); 405 names every allowed method."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
import pytest

from functions.samples import SAMPLE_ACCOUNT_SID, twilio_signature
from tests.functions.conftest import Tenant, make_agent, make_tenant, phone

AGENT = {
    "id": "acme-shop",
    "name": "Acme Shop",
    "greeting": "Hello.",
    "start": "done",
    "escalation": {"target": "+15550002222"},
    "states": {"done": {"say": "Goodbye.", "action": {"type": "end", "disposition": "resolved"}}},
}


@pytest.fixture
def api(live_api: str, sql: psycopg.Connection[Any]) -> tuple[httpx.Client, Tenant]:
    tenant = make_tenant(sql, ["admin"])
    make_agent(sql, tenant.tenant_id)
    client = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=30)
    return client, tenant


def _refused(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    return error


def _raw_json(client: httpx.Client, method: str, path: str, text: str) -> httpx.Response:
    return client.request(
        method, path, content=text.encode(), headers={"Content-Type": "application/json"}
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/calls/x%00"),
        ("DELETE", "/v1/api-keys/%00"),
        ("DELETE", "/v1/agents/acme-shop/documents/doc%00"),
        ("GET", "/v1/calls?q=refund%00"),
        ("GET", "/v1/calls?cursor=%00"),
        ("GET", "/v1/agents?%00=1"),
    ],
)
def test_a_nul_byte_in_the_path_or_query_is_a_400(
    api: tuple[httpx.Client, Tenant], method: str, path: str
) -> None:
    client, _ = api
    error = _refused(client.request(method, path))
    assert error["code"] == "bad_request" and "NUL" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/agents", {"definition": {**AGENT, "name": "Acme\u0000Shop"}}),
        ("POST", "/v1/agents/validate", {"yaml": "id: x\u0000"}),
        ("POST", "/v1/agents/acme-shop/documents", {"title": "Re\u0000turns", "text": "x"}),
        ("POST", "/v1/agents/acme-shop/documents", {"title": "Returns", "text": "x\u0000y"}),
        ("POST", "/v1/api-keys", {"name": "dash\u0000board"}),
        ("POST", "/v1/api-keys", {"name\u0000": "dashboard"}),
        ("POST", "/v1/tenants", {"name": "Acme\u0000"}),
    ],
)
def test_a_nul_character_in_a_json_body_is_a_400_and_nothing_is_stored(
    api: tuple[httpx.Client, Tenant],
    sql: psycopg.Connection[Any],
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    client, tenant = api
    keys_before = sql.execute(
        "SELECT count(*) AS n FROM api_keys WHERE tenant_id = %s", (tenant.tenant_id,)
    ).fetchone()
    error = _refused(client.request(method, path, json=body))
    assert "NUL" in error["message"]
    keys_after = sql.execute(
        "SELECT count(*) AS n FROM api_keys WHERE tenant_id = %s", (tenant.tenant_id,)
    ).fetchone()
    assert keys_after == keys_before
    versions = sql.execute(
        "SELECT count(*) AS n FROM agent_versions WHERE tenant_id = %s", (tenant.tenant_id,)
    ).fetchone()
    assert versions["n"] == 1


def test_a_lone_surrogate_is_a_400(api: tuple[httpx.Client, Tenant]) -> None:
    client, _ = api
    response = _raw_json(client, "POST", "/v1/api-keys", '{"name": "key \\ud800"}')
    assert "surrogate" in _refused(response)["message"]


@pytest.mark.parametrize("depth", [100, 5000, 100_000])
def test_deeply_nested_json_is_a_400(api: tuple[httpx.Client, Tenant], depth: int) -> None:
    client, _ = api
    body = '{"definition": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    response = _raw_json(client, "POST", "/v1/agents/validate", body)
    assert "nested deeper" in _refused(response)["message"]


def test_a_body_over_the_limit_is_a_413(api: tuple[httpx.Client, Tenant]) -> None:
    client, _ = api
    response = _raw_json(client, "POST", "/v1/agents/validate", '"' + "x" * 9_000_000 + '"')
    assert _refused(response, 413)["code"] == "too_large"


def test_a_nul_in_a_signed_twilio_webhook_is_a_400_and_writes_nothing(
    live_api: str, sql: psycopg.Connection[Any]
) -> None:
    sid = "CA" + "1" * 32
    form = {
        "AccountSid": SAMPLE_ACCOUNT_SID,
        "CallSid": sid,
        "CallStatus": "ringing",
        "Direction": "inbound\x00",
        "From": "+15551230001",
        "To": phone(),
    }
    url = f"{live_api}/twilio/voice"
    response = httpx.post(
        url, data=form, headers={"X-Twilio-Signature": twilio_signature(url, form)}, timeout=30
    )
    assert "NUL" in _refused(response)["message"]
    assert sql.execute("SELECT 1 FROM calls WHERE twilio_call_sid = %s", (sid,)).fetchone() is None


@pytest.mark.parametrize(
    "path",
    [
        "/v1/dispositions/summary?end=0001-01-15",
        "/v1/intents/summary?start=0001-01-01&end=0001-01-02",
        "/v1/latency/summary?end=0001-01-01",
        "/v1/calls?started_before=9999-12-31T23:00:00-14:00",
        "/v1/calls?started_after=1970-01-01T00:00:00%2B14:00",
        "/v1/calls?started_after=0001-01-01T00:00:00Z",
    ],
)
def test_dates_out_of_range_are_a_422(api: tuple[httpx.Client, Tenant], path: str) -> None:
    client, _ = api
    error = _refused(client.get(path), 422)
    assert error["details"][0]["field"].startswith("query.")


def test_the_default_start_never_underflows(api: tuple[httpx.Client, Tenant]) -> None:
    client, _ = api
    response = client.get("/v1/dispositions/summary?end=1970-01-15")
    assert response.status_code == 200, response.text
    assert response.json()["start"] == "1970-01-01"


def test_405_names_every_method_the_path_takes(api: tuple[httpx.Client, Tenant]) -> None:
    client, _ = api
    response = client.patch("/v1/api-keys")
    assert _refused(response, 405)["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, POST"
    response = client.post("/v1/phone-numbers/+15551234567")
    assert set(response.headers["allow"].split(", ")) == {"PUT", "DELETE"}


def test_a_cursor_with_the_wrong_types_is_a_422(api: tuple[httpx.Client, Tenant]) -> None:
    import base64

    client, _ = api
    cursor = base64.urlsafe_b64encode(json.dumps([1, 2, "x"]).encode()).decode().rstrip("=")
    assert _refused(client.get(f"/v1/calls?cursor={cursor}"), 422)["details"][0]["field"] == (
        "query.cursor"
    )


@pytest.mark.parametrize("path", ["/v1/calls/x%00", "/v1/calls/x\x00"])
def test_the_lambda_handler_refuses_a_nul_too(rt: Any, tenant: Tenant, path: str) -> None:
    from functions.analytics.app import handler
    from tests.functions.conftest import api_event, invoke

    reply = invoke(handler, api_event("analytics.get-v1-calls-call_id.json", tenant, path=path))
    assert reply.status == 400 and reply.json()["error"]["code"] == "bad_request"


def test_forwarded_headers_from_an_untrusted_peer_do_not_change_links(
    api: tuple[httpx.Client, Tenant], sql: psycopg.Connection[Any], live_api: str, rt: Any
) -> None:
    client, tenant = api
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, recording_url) VALUES ('fwd-1', %s, %s)",
        (tenant.tenant_id, (rt.settings.data_dir / "recordings" / "x.wav").resolve().as_uri()),
    )
    forged = {"X-Forwarded-Host": "evil.example.com", "X-Forwarded-Proto": "https"}
    link = client.get("/v1/calls/fwd-1", headers=forged).json()["recording_url"]
    assert link == f"{live_api}/v1/calls/fwd-1/recording"
    rt._settings = rt.settings.model_copy(update={"trusted_proxies": ["127.0.0.0/8"]})
    link = client.get("/v1/calls/fwd-1", headers=forged).json()["recording_url"]
    assert link == "https://evil.example.com/v1/calls/fwd-1/recording"
