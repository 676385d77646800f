"""Rotating a webhook's secret: the new secret is answered once; during the overlap every
delivery carries two signatures (new and previous), so a real receiver process that verifies
with docs/api.md's check accepts deliveries while it knows only the old secret, and after it
switched to the new one; once the overlap is over only the new secret signs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from functions.admin.app import handler as admin
from functions.webhooks import delivery, outcomes
from tests.functions.conftest import Tenant, add_key, api_event, invoke
from tests.functions.test_webhook_delivery import Receiver


def api(method: str, path: str, tenant: Tenant, body: Any = None) -> Any:
    event = api_event("admin.get-v1-webhooks.json", tenant, path=path, body=body)
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = f"{method} {path}"
    return invoke(admin, event)


def _deliver_one(rt: Any, run: Any, tenant: Tenant, subscription_id: str) -> str:
    """Record one event for the tenant and POST its delivery to ``subscription_id`` once."""

    async def scenario() -> str:
        from functions.common.db import db

        async with db() as conn:
            await outcomes.record(
                conn, [outcomes.happened_now(tenant.tenant_id, "campaign.completed", {"n": 1})]
            )
            await conn.commit()
            cur = await conn.execute(
                "SELECT delivery_id FROM webhook_deliveries WHERE subscription_id = %s "
                "AND status = 'pending' ORDER BY created_at DESC LIMIT 1",
                (subscription_id,),
            )
            ours = (await cur.fetchone())["delivery_id"]
            # Other tests' rows are due too (one database per session): only ours is POSTed.
            (leased,) = [
                d for d in await delivery.lease_due(conn, rt.settings) if d.delivery_id == ours
            ]
            return await delivery.deliver(conn, rt.settings, leased)

    return str(run(scenario()))


def _signatures(receiver: Receiver) -> list[str]:
    last = receiver.entries("/ok")[-1]
    return [s.strip() for s in last["headers"]["parley-webhook-signature"].split(",")]


def test_a_rotated_secret_signs_beside_the_new_one_until_the_overlap_ends(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, run: Any, tmp_path: Path
) -> None:
    receiver = Receiver(tmp_path / "received.jsonl")
    url = f"http://127.0.0.1:{receiver.port}/ok"
    created = api("POST", "/v1/webhooks", tenant, {"url": url, "events": ["campaign.*"]}).json()
    hook_id, first = created["subscription_id"], created["secret"]
    try:
        receiver.start(f"--secret={first}")
        assert _deliver_one(rt, run, tenant, hook_id) == "delivered"
        assert len(_signatures(receiver)) == 1

        before = datetime.now(UTC)
        rotated = api("POST", f"/v1/webhooks/{hook_id}/secret", tenant)
        assert rotated.status == 200, rotated.body
        second = rotated.json()["secret"]
        assert second.startswith("whsec_") and second != first
        expires = datetime.fromisoformat(rotated.json()["previous_secret_expires_at"])
        assert abs(expires - before - timedelta(hours=24)) < timedelta(minutes=1)  # the default
        shown = api("GET", f"/v1/webhooks/{hook_id}", tenant).json()
        assert "secret" not in shown and shown["previous_secret_expires_at"] is not None

        # The receiver still knows only the old secret: nothing is refused.
        assert _deliver_one(rt, run, tenant, hook_id) == "delivered"
        assert len(_signatures(receiver)) == 2
        # It switches to the new secret (a deploy of the receiver): still nothing refused.
        receiver.kill()
        receiver.start(f"--secret={second}")
        assert _deliver_one(rt, run, tenant, hook_id) == "delivered"

        # A second rotation with a short overlap: only the secret it replaces keeps signing.
        third = api("POST", f"/v1/webhooks/{hook_id}/secret", tenant, {"overlap_s": 60}).json()
        assert _deliver_one(rt, run, tenant, hook_id) == "delivered"  # the receiver has #2
        receiver.kill()
        receiver.start(f"--secret={first}")
        assert _deliver_one(rt, run, tenant, hook_id) == "retrying"  # #1 signs no more
        assert receiver.entries("/ok")[-1]["answered"] == 401

        # The overlap ends: only the newest secret signs, a receiver with the previous refuses.
        sql.execute(
            "UPDATE webhook_subscriptions SET previous_secret_expires_at = now() "
            "WHERE subscription_id = %s",
            (hook_id,),
        )
        receiver.kill()
        receiver.start(f"--secret={second}")
        assert _deliver_one(rt, run, tenant, hook_id) == "retrying"
        assert len(_signatures(receiver)) == 1
        receiver.kill()
        receiver.start(f"--secret={third['secret']}")
        assert _deliver_one(rt, run, tenant, hook_id) == "delivered"
        assert (
            api("GET", f"/v1/webhooks/{hook_id}", tenant).json()["previous_secret_expires_at"]
            is None
        )
    finally:
        if receiver.proc is not None and receiver.proc.poll() is None:
            receiver.kill()

    actions = [e["action"] for e in api("GET", "/v1/audit-log", tenant).json()["items"]]
    assert actions[:2] == ["webhook_secret_rotated", "webhook_secret_rotated"]


def test_a_leaked_secret_stops_at_once_and_bad_rotations_are_a_clear_4xx(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant, run: Any
) -> None:
    body = {"url": "http://127.0.0.1:9/x", "events": ["*"]}
    hook_id = api("POST", "/v1/webhooks", tenant, body).json()["subscription_id"]
    path = f"/v1/webhooks/{hook_id}/secret"
    now = api("POST", path, tenant, {"overlap_s": 0})
    assert now.status == 200 and now.json()["previous_secret_expires_at"] is None
    row = sql.execute(
        "SELECT secret, previous_secret FROM webhook_subscriptions WHERE subscription_id = %s",
        (hook_id,),
    ).fetchone()
    assert row == {"secret": now.json()["secret"], "previous_secret": None}

    assert api("POST", path, tenant, {"overlap_s": -1}).status == 422
    too_long = api("POST", path, tenant, {"overlap_s": 8 * 86400})
    assert too_long.status == 422 and "overlap_s" in too_long.body
    assert api("POST", path, tenant, {"overlap": 5}).status == 422  # unknown field
    assert api("POST", path, tenant, "soon").status == 422
    assert api("POST", path, other_tenant).status == 404
    assert api("POST", f"/v1/webhooks/wh_{'0' * 32}/secret", tenant).status == 404
    assert api("POST", "/v1/webhooks/nope/secret", tenant).status == 422
    reader = add_key(sql, tenant.tenant_id, ["read"])
    assert api("POST", path, reader).status == 403
    # The configured overlap is the default.
    rt._settings = rt.settings.model_copy(update={"webhook_secret_overlap_s": 3600.0})
    hour = api("POST", path, tenant).json()
    left = datetime.fromisoformat(hour["previous_secret_expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=59) < left <= timedelta(hours=1)
