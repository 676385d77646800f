"""Deleting a call and a caller's calls through the admin API, and the audit log that records
it (real PostgreSQL, real recording files)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from functions.admin.app import handler as admin
from functions.analytics.app import handler as analytics
from functions.common.runtime import Runtime
from tests.functions.conftest import Tenant, add_key, api_event, invoke


def _call(sql: psycopg.Connection[Any], tenant_id: str, number: str, recording: str | None) -> str:
    call_id = f"p-{uuid.uuid4().hex[:10]}"
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, from_number, recording_url) "
        "VALUES (%s, %s, %s, %s)",
        (call_id, tenant_id, number, recording),
    )
    sql.execute(
        "INSERT INTO call_turns (call_id, speaker, turn_index, text, start_ms, end_ms) "
        "VALUES (%s, 'caller', 0, 'hello', 0, 500)",
        (call_id,),
    )
    return call_id


def _send(handler: Any, method: str, path: str, tenant: Tenant, **query: str) -> Any:
    event = api_event("analytics.get-v1-calls.json", tenant, path=path, query=query)
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = f"{method} {path}"
    return invoke(handler, event)


def test_deleting_a_call_removes_it_everywhere_and_is_audited(
    rt: Runtime, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> None:
    store = rt.settings.data_dir / "recordings"
    store.mkdir(parents=True)
    wav = store / "one.wav"
    wav.write_bytes(b"RIFF")
    call_id = _call(sql, tenant.tenant_id, "+15550003333", f"file://{wav}")
    theirs = _call(sql, other_tenant.tenant_id, "+15550003333", None)

    assert _send(admin, "DELETE", f"/v1/calls/{theirs}", tenant).status == 404  # not its call
    reader = add_key(sql, tenant.tenant_id, ["read"])
    assert _send(admin, "DELETE", f"/v1/calls/{call_id}", reader).status == 403
    reply = _send(admin, "DELETE", f"/v1/calls/{call_id}", tenant)
    assert reply.status == 200, reply.body
    assert reply.json() == {"calls": 1, "recordings": 1, "call_ids": [call_id]}
    assert not wav.exists()
    assert _send(analytics, "GET", f"/v1/calls/{call_id}", tenant).status == 404
    assert _send(admin, "DELETE", f"/v1/calls/{call_id}", tenant).status == 404
    assert _send(analytics, "GET", f"/v1/calls/{theirs}", other_tenant).status == 200

    log = _send(admin, "GET", "/v1/audit-log", tenant).json()
    assert log["items"][0]["action"] == "call_deleted"
    assert log["items"][0]["detail"] == {"call_id": call_id}
    assert log["items"][0]["key_id"] == tenant.key_id


def test_deleting_a_caller_removes_every_call_of_the_number_and_not_the_number_in_the_log(
    rt: Runtime, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    number = "+1555" + uuid.uuid4().hex[:7].translate(str.maketrans("abcdef", "123456"))
    ids = {_call(sql, tenant.tenant_id, number, None) for _ in range(3)}
    kept = _call(sql, tenant.tenant_id, "+15550009999", None)
    reply = _send(admin, "DELETE", f"/v1/callers/{number}", tenant)
    assert reply.status == 200, reply.body
    assert reply.json()["calls"] == 3 and set(reply.json()["call_ids"]) == ids
    left = sql.execute("SELECT call_id FROM calls WHERE tenant_id = %s", (tenant.tenant_id,))
    assert [r["call_id"] for r in left] == [kept]
    entry = _send(admin, "GET", "/v1/audit-log", tenant, limit="1").json()["items"][0]
    assert entry["action"] == "caller_deleted" and number not in str(entry["detail"])
    assert _send(admin, "DELETE", "/v1/callers/12345", tenant).status == 422


def test_key_changes_are_in_the_audit_log_newest_first_in_pages(
    rt: Runtime, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    event = api_event("admin.post-v1-api-keys.json", tenant)
    created = invoke(admin, event)
    assert created.status == 201, created.body
    key_id = created.json()["key_id"]
    revoked = _send(admin, "DELETE", f"/v1/api-keys/{key_id}", tenant)
    assert revoked.status == 204
    first = _send(admin, "GET", "/v1/audit-log", tenant, limit="1").json()
    assert first["items"][0]["action"] == "key_revoked" and first["next_before"]
    second = _send(
        admin, "GET", "/v1/audit-log", tenant, limit="1", before=str(first["next_before"])
    ).json()
    assert second["items"][0]["action"] == "key_created"
    assert second["items"][0]["detail"]["key_id"] == key_id
