"""The webhook API (subscriptions, the delivery log, redelivery) on the real PostgreSQL, the
signature a receiver checks, which URLs are accepted, and the delivery rows the event consumer
and the campaign and transfer routes record."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from functions.admin.app import handler as admin
from functions.analysis import worker as analysis_worker
from functions.common.config import FunctionSettings
from functions.consumer.processor import BatchProcessor
from functions.transfer.app import handler as transfer
from functions.webhooks import delivery, outcomes, signing, urls
from shared.bus import ReceivedRecord
from shared.db import create_pool
from tests.events.conftest import call_events
from tests.functions.conftest import Tenant, add_key, api_event, invoke, make_agent, phone

HOOK = {"url": "https://hooks.example.com/parley", "events": ["call.analyzed", "transfer.*"]}


def api(
    handler: Any, method: str, path: str, tenant: Tenant, body: Any = None, **query: str
) -> Any:
    event = api_event("admin.get-v1-webhooks.json", tenant, path=path, query=query, body=body)
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = f"{method} {path}"
    return invoke(handler, event)


def test_signature_is_checked_against_body_secret_and_age() -> None:
    body, secret, now = b'{"id":"wd_1"}', signing.new_secret(), 1_800_000_000
    signature = signing.sign(secret, now, body)
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    assert signing.verify(secret, str(now), signature, body, now=now + 10)
    assert not signing.verify(secret, str(now), signature, body + b" ", now=now)  # tampered
    assert not signing.verify("whsec_other", str(now), signature, body, now=now)
    assert not signing.verify(secret, str(now + 1), signature, body, now=now)  # time changed
    assert not signing.verify(secret, str(now), signature, body, now=now + 301)  # a replay
    assert not signing.verify(secret, "soon", signature, body, now=now)
    # During a rotation the header may list several signatures.
    assert signing.verify(secret, str(now), f"v1=00, {signature}", body, now=now)


def test_receiver_urls_https_and_public_in_production_local_http_otherwise() -> None:
    def production(url: str) -> str | None:
        return urls.problem(url, production=True)

    assert production("https://hooks.example.com/parley?x=1") is None
    assert production("https://203.0.113.9/hook") is not None  # documentation range: not global
    assert "https" in str(production("http://hooks.example.com/parley"))
    for internal in (
        "https://localhost/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest",
        "https://[::1]/x",
        "https://db.internal/",
    ):
        assert production(internal) is not None, internal  # fmt: skip
    assert urls.problem("http://127.0.0.1:8080/hook", production=False) is None
    for bad in (
        "ftp://example.com/x",
        "example.com/hook",
        "https://user:pw@example.com/",
        "https://example.com:99999/",
        "https://example.com/#frag",
        "https://",
    ):
        assert urls.problem(bad, production=False) is not None, bad  # fmt: skip
    assert urls.problem("https://example.com/" + "a" * 2100, production=False) is not None


def test_backoff_grows_by_the_factor_up_to_the_cap() -> None:
    s = FunctionSettings(webhook_retry_base_s=30, webhook_retry_factor=3, webhook_retry_max_s=3600)
    waits = [delivery.backoff_s(s, n, jitter=0) for n in range(1, 8)]
    assert waits == [30, 90, 270, 810, 2430, 3600, 3600]
    assert 24 <= delivery.backoff_s(s, 1) <= 36  # +-20% jitter


def test_an_attempt_without_an_answer_is_described_in_words() -> None:
    request = httpx.Request("POST", "https://hooks.example.com/x")
    reset = delivery.describe_failure(httpx.ReadError("", request=request))
    assert reset == "ReadError: the receiver closed the connection before answering"
    refused = delivery.describe_failure(httpx.ConnectError("[Errno 111] refused", request=request))
    assert refused == "ConnectError: could not connect to the receiver ([Errno 111] refused)"
    slow = delivery.describe_failure(httpx.ReadTimeout("timed out", request=request))
    assert slow.startswith("ReadTimeout: no answer within the delivery timeout")


def test_event_patterns() -> None:
    assert outcomes.matches(["transfer.*"], "transfer.requested")
    assert outcomes.matches(["*"], "campaign.completed")
    assert outcomes.matches(["campaign.*"], "campaign.attempt.finished")
    assert not outcomes.matches(["call.ended"], "call.analyzed")
    assert not outcomes.matches(["call.*"], "campaign.started")
    assert outcomes.unknown_events(["call.ended", "call.finished", "transfer.*"]) == [
        "call.finished"
    ]


def test_subscriptions_are_created_listed_changed_deleted_and_audited(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> None:
    created = api(admin, "POST", "/v1/webhooks", tenant, HOOK)
    assert created.status == 201, created.body
    hook = created.json()
    assert hook["secret"].startswith("whsec_") and hook["active"] is True
    assert hook["events"] == ["call.analyzed", "transfer.*"]
    hook_id = hook["subscription_id"]

    listed = api(admin, "GET", "/v1/webhooks", tenant).json()
    assert [h["subscription_id"] for h in listed] == [hook_id]
    assert "secret" not in listed[0]  # shown once only
    assert api(admin, "GET", "/v1/webhooks", other_tenant).json() == []
    assert api(admin, "GET", f"/v1/webhooks/{hook_id}", other_tenant).status == 404

    changed = api(admin, "PATCH", f"/v1/webhooks/{hook_id}", tenant, {"active": False})
    assert changed.status == 200 and changed.json()["active"] is False
    assert api(admin, "DELETE", f"/v1/webhooks/{hook_id}", tenant).status == 204
    assert api(admin, "GET", f"/v1/webhooks/{hook_id}", tenant).status == 404
    assert api(admin, "DELETE", f"/v1/webhooks/{hook_id}", tenant).status == 404

    actions = [e["action"] for e in api(admin, "GET", "/v1/audit-log", tenant).json()["items"]]
    assert actions[:3] == ["webhook_deleted", "webhook_updated", "webhook_created"]


def test_bad_input_is_a_clear_4xx(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> None:
    def create(body: Any, who: Tenant = tenant) -> Any:
        return api(admin, "POST", "/v1/webhooks", who, body)

    unknown = create({**HOOK, "events": ["call.ended", "call.finished"]})
    assert unknown.status == 422 and "call.finished" in unknown.body
    assert "campaign.attempt.finished" in unknown.body  # says what exists
    assert create({**HOOK, "events": []}).status == 422
    assert create({**HOOK, "secret": "mine"}).status == 422  # unknown field
    assert create({"events": ["*"]}).status == 422
    assert create("not json").status == 422
    ftp = create({**HOOK, "url": "ftp://example.com/x"})
    assert ftp.status == 422 and ftp.json()["error"]["details"][0]["field"] == "body.url"
    assert create({**HOOK, "url": "http://127.0.0.1:9/x"}).status == 201  # test: local http ok
    reader = add_key(sql, tenant.tenant_id, ["read"])
    assert create(HOOK, reader).status == 403

    rt._settings = rt.settings.model_copy(update={"env": "production"})
    plain = create({**HOOK, "url": "http://hooks.example.com/x"})
    assert plain.status == 422 and "https" in plain.json()["error"]["message"]
    assert create({**HOOK, "url": "https://169.254.169.254/latest"}).status == 422
    assert create(HOOK).status == 201

    hook_id = api(admin, "GET", "/v1/webhooks", tenant).json()[0]["subscription_id"]
    assert api(admin, "PATCH", f"/v1/webhooks/{hook_id}", tenant, {}).status == 422
    assert (
        api(admin, "PATCH", f"/v1/webhooks/{hook_id}", tenant, {"url": "http://x.io"}).status == 422
    )
    assert (
        api(admin, "PATCH", f"/v1/webhooks/{hook_id}", other_tenant, {"active": True}).status == 404
    )
    assert api(admin, "GET", "/v1/webhooks/wh_nope", tenant).status == 422
    assert api(admin, "GET", f"/v1/webhook-deliveries/wd_{'0' * 32}", tenant).status == 404

    def deliveries(**query: str) -> Any:
        return api(admin, "GET", "/v1/webhook-deliveries", tenant, **query)

    assert deliveries(status="lost").status == 422
    assert deliveries(event_type="call.finished").status == 422
    assert deliveries(cursor="garbage").status == 422
    assert deliveries(limit="0").status == 422
    assert deliveries(since="2026-12-01T00:00:00").status == 422  # a time needs its zone
    event = api_event("admin.get-v1-webhook-deliveries.json", tenant, path="/v1/webhook-deliveries")
    event["rawQueryString"] = "limit=1&limit=1000"
    assert invoke(admin, event).status == 400


def _requests(sql: psycopg.Connection[Any], tenant_id: str) -> set[str]:
    rows = sql.execute(
        "SELECT request_id FROM call_analysis_requests WHERE tenant_id = %s", (tenant_id,)
    ).fetchall()
    return {r["request_id"] for r in rows}


def _records(events: list[Any]) -> list[ReceivedRecord]:
    return [
        ReceivedRecord("t", 0, i, e.call_id.encode(), e.to_json()) for i, e in enumerate(events)
    ]


def test_the_consumer_records_each_delivery_once_and_the_log_pages(
    rt: Any, database_url: str, sql: psycopg.Connection[Any], tenant: Tenant, run: Any
) -> None:
    hook = api(admin, "POST", "/v1/webhooks", tenant, {**HOOK, "events": ["call.*"]}).json()
    paused = api(admin, "POST", "/v1/webhooks", tenant, HOOK).json()["subscription_id"]
    api(admin, "PATCH", f"/v1/webhooks/{paused}", tenant, {"active": False})
    events = [
        e
        for n in range(3)
        for e in call_events(f"whc-{uuid.uuid4().hex[:8]}-{n}", 6, tenant=tenant.tenant_id)
    ]
    others = call_events(f"whc-{uuid.uuid4().hex[:8]}", 6, tenant="someone-else")

    async def project_twice() -> None:
        pool = await create_pool(database_url, max_size=2)
        try:
            processor = BatchProcessor(pool)
            await processor.process(_records(events + others))
            await processor.process(_records(events))  # a replay: nothing new
        finally:
            await pool.close()

    run(project_twice())

    def recorded() -> list[dict[str, Any]]:
        return sql.execute(
            "SELECT subscription_id, event_type, status FROM webhook_deliveries "
            "WHERE tenant_id = %s",
            (tenant.tenant_id,),
        ).fetchall()

    rows = recorded()
    assert len(rows) == 6 and {r["subscription_id"] for r in rows} == {hook["subscription_id"]}
    assert sorted({r["event_type"] for r in rows}) == ["call.ended", "call.started"]
    # call.analyzed comes once a job worker has stored the call's analysis.
    leased = run(analysis_worker.sweep(rt.settings))
    mine = [item for item in leased if item.request_id in _requests(sql, tenant.tenant_id)]
    assert len(mine) == 3
    for item in leased:
        run(analysis_worker.run(rt.settings, item))
    rows = recorded()
    assert len(rows) == 9
    assert sorted({r["event_type"] for r in rows}) == [
        "call.analyzed",
        "call.ended",
        "call.started",
    ]

    page = api(admin, "GET", "/v1/webhook-deliveries", tenant, limit="4").json()
    rest = api(
        admin, "GET", "/v1/webhook-deliveries", tenant, limit="10", cursor=page["next_cursor"]
    ).json()
    assert len(page["items"]) == 4 and len(rest["items"]) == 5 and rest["next_cursor"] is None
    seen = [d["delivery_id"] for d in page["items"] + rest["items"]]
    assert len(set(seen)) == 9
    analyzed = api(
        admin, "GET", "/v1/webhook-deliveries", tenant, event_type="call.analyzed", status="pending"
    ).json()["items"]
    assert len(analyzed) == 3
    detail = api(admin, "GET", f"/v1/webhook-deliveries/{analyzed[0]['delivery_id']}", tenant)
    payload = detail.json()["payload"]
    assert payload["id"] == analyzed[0]["delivery_id"] and payload["type"] == "call.analyzed"
    assert payload["data"]["disposition"] == "resolved" and detail.json()["log"] == []
    assert set(payload["data"]["usage"]) == {"asr_audio_ms", "tts_chars", "llm_tokens"}
    assert payload["data"]["analysis"]["version"] == 1
    assert payload["data"]["summary"] == payload["data"]["analysis"]["summary"] == "done"

    # Deleting a call takes its deliveries (their payloads hold its data) with it.
    call_id = payload["data"]["call_id"]
    assert api(admin, "DELETE", f"/v1/calls/{call_id}", tenant).status == 200
    left = sql.execute(
        "SELECT count(*) AS n FROM webhook_deliveries WHERE call_id = %s", (call_id,)
    ).fetchone()
    assert left == {"n": 0}


def test_campaign_moves_and_transfers_record_their_events(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, fake_twilio: Any
) -> None:
    api(admin, "POST", "/v1/webhooks", tenant, {**HOOK, "events": ["campaign.*", "transfer.*"]})
    make_agent(sql, tenant.tenant_id, number=phone())
    created = api(
        transfer,
        "POST",
        "/v1/campaigns",
        tenant,
        {"name": "hooks", "agent_id": "acme-shop", "contacts": [{"number": "+12125550100"}]},
    )
    assert created.status == 201, created.body
    campaign_id = created.json()["campaign_id"]
    for action in ("start", "pause", "cancel"):
        moved = api(transfer, "POST", f"/v1/campaigns/{campaign_id}/{action}", tenant)
        assert moved.status == 200, moved.body
    call_id = f"tr-{uuid.uuid4().hex[:8]}"
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, agent_id, twilio_call_sid, status, status_rank) "
        "VALUES (%s, %s, 'acme-shop', %s, 'in-progress', 2)",
        (call_id, tenant.tenant_id, "CA" + uuid.uuid4().hex),
    )
    moved = api(
        transfer, "POST", f"/v1/calls/{call_id}/transfer", tenant, {"target": "+15550002222"}
    )
    assert moved.status == 200, moved.body
    rows = sql.execute(
        "SELECT event_type, payload FROM webhook_deliveries WHERE tenant_id = %s "
        "ORDER BY created_at",
        (tenant.tenant_id,),
    ).fetchall()
    assert [r["event_type"] for r in rows] == [
        "campaign.started",
        "campaign.paused",
        "campaign.canceled",
        "transfer.initiated",
    ]
    assert rows[1]["payload"]["data"] == {
        "campaign_id": campaign_id,
        "name": "hooks",
        "status": "paused",
        "previous_status": "running",
    }
    assert rows[3]["payload"]["data"]["target"] == "+15550002222"


@pytest.mark.parametrize("answer", [200, 500])
def test_a_leased_delivery_is_posted_once_per_lease(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, run: Any, answer: int
) -> None:
    """A task whose lease was taken over (it waited too long in the queue) posts nothing."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    got: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            got.append(dict(self.headers))
            self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    hook = api(admin, "POST", "/v1/webhooks", tenant, {"url": url, "events": ["*"]}).json()

    async def scenario() -> list[str]:
        from functions.common.db import db

        async with db() as conn:
            await outcomes.record(
                conn,
                [outcomes.happened_now(tenant.tenant_id, "campaign.completed", {"n": 1})],
            )
            await conn.commit()
            cur = await conn.execute(
                "SELECT delivery_id FROM webhook_deliveries WHERE subscription_id = %s",
                (hook["subscription_id"],),
            )
            ours = (await cur.fetchone())["delivery_id"]

            async def lease() -> list[delivery.Leased]:
                # Earlier tests' rows are due too (one database per session): keep ours.
                return [
                    d for d in await delivery.lease_due(conn, rt.settings) if d.delivery_id == ours
                ]

            first = await lease()
            assert len(first) == 1 and await lease() == []
            await conn.execute(
                "UPDATE webhook_deliveries SET leased_until = now() - interval '1 second'"
                " WHERE subscription_id = %s", (hook["subscription_id"],)
            )  # fmt: skip
            await conn.commit()
            second = await lease()
            stale = await delivery.deliver(conn, rt.settings, first[0])
            fresh = await delivery.deliver(conn, rt.settings, second[0])
            return [stale, fresh]

    try:
        assert run(scenario()) == ["stale", "delivered" if answer == 200 else "retrying"]
    finally:
        server.shutdown()
    assert len(got) == 1
    assert got[0]["Parley-Webhook-Attempt"] == "1"
    assert abs(int(got[0]["Parley-Webhook-Timestamp"]) - time.time()) < 30
    row = sql.execute(
        "SELECT status, attempts, last_status, next_attempt_at > now() AS later "
        "FROM webhook_deliveries WHERE subscription_id = %s",
        (hook["subscription_id"],),
    ).fetchone()
    if answer == 200:
        assert row["status"] == "delivered" and row["attempts"] == 0
    else:
        assert row == {"status": "pending", "attempts": 1, "last_status": 500, "later": True}


def test_the_verification_sample_in_the_docs_accepts_ours_and_refuses_replays() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    start = text.index("```python\nimport hashlib, hmac, time")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)  # the sample as a reader copies it
    sample_verify = namespace["verify"]
    secret, body, now = signing.new_secret(), b'{"id":"wd_1","type":"call.ended"}', int(time.time())
    headers = {
        "parley-webhook-timestamp": str(now),
        "parley-webhook-signature": signing.sign(secret, now, body),
    }
    assert sample_verify(secret, headers, body)
    assert not sample_verify(secret, headers, body.replace(b"ended", b"started"))
    old = now - 600
    replayed = {
        "parley-webhook-timestamp": str(old),
        "parley-webhook-signature": signing.sign(secret, old, body),
    }
    assert not sample_verify(secret, replayed, body)
    assert not sample_verify(secret, {}, body)
