"""API Gateway HTTP API (payload v2) sample events, one per route, in ``events/samples/apigw/``.

``parley api samples`` writes them; a test checks they are current and cover every route. The
Twilio samples are signed with :data:`SAMPLE_AUTH_TOKEN` for the URL API Gateway would show
(stage ``prod``), so they pass signature validation as they are. The /v1 samples carry a
placeholder key: replace the ``authorization`` header with a real one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from twilio.request_validator import RequestValidator

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "events" / "samples" / "apigw"
SAMPLE_AUTH_TOKEN = "sample-twilio-auth-token"
SAMPLE_ACCOUNT_SID = "AC" + "0" * 32
SAMPLE_CALL_SID = "CA0123456789abcdef0123456789abcdef"
SAMPLE_KEY = "Bearer prl_000000000000_replace-with-a-real-api-key"
HOST = "abc123.execute-api.us-east-1.amazonaws.com"
TWILIO_STAGE = "prod"

_AGENT = {
    "id": "acme-shop",
    "name": "Acme Shop",
    "greeting": "Hello, thanks for calling Acme.",
    "start": "done",
    "escalation": {"target": "+15550002222"},
    "states": {"done": {"say": "Goodbye.", "action": {"type": "end", "disposition": "resolved"}}},
}

_WEBHOOK = "wh_" + "0" * 32
_DELIVERY = "wd_" + "0" * 32
_EXPORT = "exp_" + "0" * 32

# (function, method, route path, concrete path, query, body)
ROUTES: list[tuple[str, str, str, str, dict[str, str], Any]] = [
    (
        "voice",
        "POST",
        "/twilio/voice",
        "/twilio/voice",
        {},
        {
            "AccountSid": SAMPLE_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": SAMPLE_CALL_SID,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": "+15551230001",
            "To": "+15559870000",
        },
    ),
    (
        "voice",
        "POST",
        "/twilio/status",
        "/twilio/status",
        {},
        {
            "AccountSid": SAMPLE_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": SAMPLE_CALL_SID,
            "CallStatus": "completed",
            "CallDuration": "42",
            "Direction": "inbound",
            "From": "+15551230001",
            "To": "+15559870000",
            "SequenceNumber": "3",
            "Timestamp": "Sat, 28 Nov 2026 15:00:42 +0000",
        },
    ),
    ("admin", "POST", "/v1/tenants", "/v1/tenants", {}, {"name": "Acme Inc"}),
    ("admin", "GET", "/v1/tenant", "/v1/tenant", {}, None),
    (
        "admin",
        "PUT",
        "/v1/tenant/settings",
        "/v1/tenant/settings",
        {},
        {
            "recording_enabled": True,
            "recording_retention_days": 30,
            "redact_pii": True,
            "overflow_number": "+15550001111",
        },
    ),
    (
        "admin",
        "PATCH",
        "/v1/tenant/settings",
        "/v1/tenant/settings",
        {},
        {"recording_enabled": False},
    ),
    (
        "admin",
        "POST",
        "/v1/api-keys",
        "/v1/api-keys",
        {},
        {"name": "dashboard", "scopes": ["read"]},
    ),
    ("admin", "GET", "/v1/api-keys", "/v1/api-keys", {}, None),
    ("admin", "DELETE", "/v1/api-keys/{key_id}", "/v1/api-keys/prl_000000000000", {}, None),
    ("admin", "POST", "/v1/agents/validate", "/v1/agents/validate", {}, {"definition": _AGENT}),
    ("admin", "POST", "/v1/agents", "/v1/agents", {}, {"definition": _AGENT, "activate": True}),
    ("admin", "GET", "/v1/agents", "/v1/agents", {}, None),
    ("admin", "GET", "/v1/agents/{agent_id}", "/v1/agents/acme-shop", {}, None),
    (
        "admin",
        "GET",
        "/v1/agents/{agent_id}/versions/{version}",
        "/v1/agents/acme-shop/versions/1",
        {},
        None,
    ),
    (
        "admin",
        "POST",
        "/v1/agents/{agent_id}/activate",
        "/v1/agents/acme-shop/activate",
        {},
        {"version": 1},
    ),
    ("admin", "POST", "/v1/agents/{agent_id}/rollback", "/v1/agents/acme-shop/rollback", {}, None),
    (
        "admin",
        "PUT",
        "/v1/agents/{agent_id}/recording",
        "/v1/agents/acme-shop/recording",
        {},
        {"enabled": True},
    ),
    (
        "admin",
        "PUT",
        "/v1/tenants/{tenant_id}/phone-numbers/{number}",
        "/v1/tenants/acme-inc/phone-numbers/+15559870000",
        {},
        {"agent_id": "acme-shop"},
    ),
    (
        "admin",
        "PUT",
        "/v1/phone-numbers/{number}",
        "/v1/phone-numbers/+15559870000",
        {},
        {"agent_id": "acme-shop"},
    ),
    ("admin", "GET", "/v1/phone-numbers", "/v1/phone-numbers", {}, None),
    ("admin", "DELETE", "/v1/phone-numbers/{number}", "/v1/phone-numbers/+15559870000", {}, None),
    (
        "admin",
        "POST",
        "/v1/agents/{agent_id}/documents",
        "/v1/agents/acme-shop/documents",
        {},
        {
            "title": "Returns",
            "format": "markdown",
            "text": "# Returns\n\nYou can return any item within 30 days with its receipt.",
        },
    ),
    ("admin", "GET", "/v1/agents/{agent_id}/documents", "/v1/agents/acme-shop/documents", {}, None),
    (
        "admin",
        "DELETE",
        "/v1/agents/{agent_id}/documents/{document_id}",
        "/v1/agents/acme-shop/documents/doc_sample",
        {},
        None,
    ),
    (
        "analytics",
        "GET",
        "/v1/calls",
        "/v1/calls",
        {"disposition": "resolved", "started_after": "2026-11-01T00:00:00Z", "limit": "20"},
        None,
    ),
    ("analytics", "GET", "/v1/calls/{call_id}", "/v1/calls/call-sample-1", {}, None),
    (
        "analytics",
        "GET",
        "/v1/calls/{call_id}/analysis",
        "/v1/calls/call-sample-1/analysis",
        {},
        None,
    ),
    (
        "analytics",
        "POST",
        "/v1/calls/{call_id}/analysis",
        "/v1/calls/call-sample-1/analysis",
        {},
        None,
    ),
    (
        "analytics",
        "GET",
        "/v1/calls/aggregate",
        "/v1/calls/aggregate",
        {"disposition": "escalated_to_human", "started_after": "2026-11-23", "group_by": "agent"},
        None,
    ),
    (
        "analytics",
        "GET",
        "/v1/calls/export",
        "/v1/calls/export",
        {"started_after": "2026-11-01", "format": "csv"},
        None,
    ),
    (
        "analytics",
        "POST",
        "/v1/exports",
        "/v1/exports",
        {"started_after": "2026-09-01", "disposition": "resolved", "format": "jsonl"},
        None,
    ),
    ("analytics", "GET", "/v1/exports", "/v1/exports", {"limit": "20"}, None),
    ("analytics", "GET", "/v1/exports/{export_id}", f"/v1/exports/{_EXPORT}", {}, None),
    ("analytics", "GET", "/v1/exports/{export_id}/file", f"/v1/exports/{_EXPORT}/file", {}, None),
    ("admin", "DELETE", "/v1/calls/{call_id}", "/v1/calls/call-sample-1", {}, None),
    ("admin", "DELETE", "/v1/callers/{number}", "/v1/callers/+15551230001", {}, None),
    ("admin", "GET", "/v1/audit-log", "/v1/audit-log", {"limit": "50"}, None),
    (
        "analytics",
        "GET",
        "/v1/calls/{call_id}/recording",
        "/v1/calls/call-sample-1/recording",
        {},
        None,
    ),
    (
        "analytics",
        "GET",
        "/v1/dispositions/summary",
        "/v1/dispositions/summary",
        {"start": "2026-09-01", "end": "2026-11-29", "group_by": "week"},
        None,
    ),
    (
        "analytics",
        "GET",
        "/v1/intents/summary",
        "/v1/intents/summary",
        {"start": "2026-09-01", "end": "2026-11-29", "group_by": "agent"},
        None,
    ),
    (
        "analytics",
        "GET",
        "/v1/latency/summary",
        "/v1/latency/summary",
        {"start": "2026-09-01", "end": "2026-11-29"},
        None,
    ),
    (
        "voice",
        "POST",
        "/twilio/amd",
        "/twilio/amd",
        {},
        {
            "AccountSid": SAMPLE_ACCOUNT_SID,
            "CallSid": SAMPLE_CALL_SID,
            "AnsweredBy": "machine_end_beep",
            "MachineDetectionDuration": "4200",
        },
    ),
    (
        "transfer",
        "POST",
        "/v1/calls/{call_id}/transfer",
        "/v1/calls/call-sample-1/transfer",
        {},
        {"target": "+15550002222"},
    ),
    (
        "transfer",
        "POST",
        "/v1/calls/outbound",
        "/v1/calls/outbound",
        {},
        {
            "agent_id": "acme-shop",
            "to": "+15551230001",
            "metadata": {"order_id": "A-1042"},
            "variables": {"first_name": "Ann"},
        },
    ),
    (
        "transfer",
        "POST",
        "/v1/campaigns",
        "/v1/campaigns",
        {},
        {
            "name": "reminders",
            "agent_id": "acme-shop",
            "contacts": [{"number": "+12125550100", "variables": {"first_name": "Ann"}}],
        },
    ),
    ("transfer", "GET", "/v1/campaigns", "/v1/campaigns", {}, None),
    ("transfer", "GET", "/v1/campaigns/{campaign_id}", "/v1/campaigns/cmp_sample", {}, None),
    (
        "transfer",
        "POST",
        "/v1/campaigns/{campaign_id}/contacts",
        "/v1/campaigns/cmp_sample/contacts",
        {},
        [{"number": "+12125550101", "timezone": "America/New_York"}],
    ),
    (
        "transfer",
        "POST",
        "/v1/campaigns/{campaign_id}/start",
        "/v1/campaigns/cmp_sample/start",
        {},
        None,
    ),
    (
        "transfer",
        "POST",
        "/v1/campaigns/{campaign_id}/pause",
        "/v1/campaigns/cmp_sample/pause",
        {},
        None,
    ),
    (
        "transfer",
        "POST",
        "/v1/campaigns/{campaign_id}/resume",
        "/v1/campaigns/cmp_sample/resume",
        {},
        None,
    ),
    (
        "transfer",
        "POST",
        "/v1/campaigns/{campaign_id}/cancel",
        "/v1/campaigns/cmp_sample/cancel",
        {},
        None,
    ),
    (
        "transfer",
        "GET",
        "/v1/campaigns/{campaign_id}/progress",
        "/v1/campaigns/cmp_sample/progress",
        {},
        None,
    ),
    (
        "transfer",
        "GET",
        "/v1/campaigns/{campaign_id}/contacts",
        "/v1/campaigns/cmp_sample/contacts",
        {"outcome": "failed", "limit": "50"},
        None,
    ),
    ("transfer", "POST", "/v1/dnc", "/v1/dnc", {}, {"numbers": ["+12125550199"]}),
    ("transfer", "GET", "/v1/dnc", "/v1/dnc", {}, None),
    ("transfer", "DELETE", "/v1/dnc/{number}", "/v1/dnc/+12125550199", {}, None),
    ("transfer", "PUT", "/v1/call-limits", "/v1/call-limits", {}, {"max_concurrent_calls": 20}),
    (
        "admin",
        "POST",
        "/v1/webhooks",
        "/v1/webhooks",
        {},
        {"url": "https://hooks.example.com/parley", "events": ["call.analyzed", "transfer.*"]},
    ),
    ("admin", "GET", "/v1/webhooks", "/v1/webhooks", {}, None),
    ("admin", "GET", "/v1/webhooks/{subscription_id}", f"/v1/webhooks/{_WEBHOOK}", {}, None),
    (
        "admin",
        "PATCH",
        "/v1/webhooks/{subscription_id}",
        f"/v1/webhooks/{_WEBHOOK}",
        {},
        {"active": False},
    ),
    ("admin", "DELETE", "/v1/webhooks/{subscription_id}", f"/v1/webhooks/{_WEBHOOK}", {}, None),
    (
        "admin",
        "POST",
        "/v1/webhooks/{subscription_id}/secret",
        f"/v1/webhooks/{_WEBHOOK}/secret",
        {},
        {"overlap_s": 86400},
    ),
    (
        "admin",
        "GET",
        "/v1/webhook-deliveries",
        "/v1/webhook-deliveries",
        {"status": "dead", "limit": "50"},
        None,
    ),
    (
        "admin",
        "GET",
        "/v1/webhook-deliveries/{delivery_id}",
        f"/v1/webhook-deliveries/{_DELIVERY}",
        {},
        None,
    ),
    (
        "admin",
        "POST",
        "/v1/webhook-deliveries/{delivery_id}/redeliver",
        f"/v1/webhook-deliveries/{_DELIVERY}/redeliver",
        {},
        None,
    ),
]


def sample_name(function: str, method: str, route: str) -> str:
    slug = route.strip("/").replace("{", "").replace("}", "").replace("/", "-")
    return f"{function}.{method.lower()}-{slug}.json"


def twilio_signature(url: str, form: dict[str, str], token: str = SAMPLE_AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, form))


def http_event(
    method: str,
    path: str,
    *,
    query: Mapping[str, str | list[str]] | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    stage: str = "$default",
    host: str = HOST,
    request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event as API Gateway would deliver it."""
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    raw_query = urlencode(query or {}, doseq=True)
    all_headers = {
        "host": host,
        "user-agent": "parley-sample/1.0",
        "x-forwarded-for": "203.0.113.10",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **(headers or {}),
    }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": host.split(".")[0],
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": all_headers["user-agent"],
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": stage,
            "time": "28/Nov/2026:15:00:00 +0000",
            "timeEpoch": 1795878000000,
        },
        "isBase64Encoded": False,
    }
    if query:
        # API Gateway joins a repeated parameter's values with commas here
        event["queryStringParameters"] = {
            k: ",".join(v) if isinstance(v, list) else v for k, v in query.items()
        }
    if body is not None:
        event["body"] = body
    return event


def twilio_event(
    path: str,
    form: dict[str, str],
    *,
    token: str = SAMPLE_AUTH_TOKEN,
    stage: str = TWILIO_STAGE,
    host: str = HOST,
) -> dict[str, Any]:
    """A signed Twilio webhook as it reaches the Lambda through API Gateway."""
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    url = f"https://{host}{raw_path}"
    return http_event(
        "POST",
        path,
        body=urlencode(form),
        stage=stage,
        host=host,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "i-twilio-idempotency-token": "00000000-0000-4000-8000-000000000000",
            "x-twilio-signature": twilio_signature(url, form, token),
            "user-agent": "TwilioProxy/1.1",
        },
    )


def build_samples() -> dict[str, dict[str, Any]]:
    samples = {}
    for function, method, route, path, query, body in ROUTES:
        name = sample_name(function, method, route)
        if function == "voice":
            samples[name] = twilio_event(path, body)
            continue
        headers = {"accept": "application/json", "authorization": SAMPLE_KEY}
        text = None
        if body is not None:
            headers["content-type"] = "application/json"
            text = json.dumps(body, separators=(",", ":"))
        samples[name] = http_event(method, path, query=query, body=text, headers=headers)
    return samples


def render(event: dict[str, Any]) -> str:
    return json.dumps(event, indent=2, sort_keys=True) + "\n"


def write_samples(folder: Path = SAMPLES_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, event in build_samples().items():
        path = folder / name
        path.write_text(render(event))
        paths.append(path)
    return paths


def load_sample(name: str, folder: Path = SAMPLES_DIR) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / name).read_text())
    return data


def form_of(event: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(event.get("body") or ""))
