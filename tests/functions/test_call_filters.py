"""The campaign_id and variable call filters on the list, the aggregate and the export alike
(one filter mechanism), through a campaign's attempts and contacts in the real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from functions.analytics.app import handler as analytics
from tests.functions.conftest import Tenant, api_request


def _get(path: str, tenant: Tenant, **query: Any) -> Any:
    return api_request(analytics, "GET", path, tenant, **query)


def _campaign(
    sql: psycopg.Connection[Any], tenant_id: str, contacts: list[dict[str, str]]
) -> tuple[str, list[str]]:
    campaign_id = f"cmp_{uuid.uuid4().hex}"
    sql.execute(
        "INSERT INTO campaigns (campaign_id, tenant_id, agent_id, name, from_number, window_start, "
        "window_end, window_days, max_concurrency, calls_per_second, retry_policy) VALUES "
        "(%s, %s, 'acme-shop', 'c', '+15550000000', '09:00', '17:00', '{1,2,3,4,5}', 1, 1, '{}')",
        (campaign_id, tenant_id),
    )
    call_ids = []
    for i, variables in enumerate(contacts):
        contact_id, sid = f"ct_{uuid.uuid4().hex}", "CA" + uuid.uuid4().hex
        call_id = f"cf-{uuid.uuid4().hex[:10]}"
        sql.execute(
            "INSERT INTO campaign_contacts (contact_id, campaign_id, tenant_id, number, timezone, "
            "variables) VALUES (%s, %s, %s, %s, 'UTC', %s)",
            (contact_id, campaign_id, tenant_id, f"+1555000{i:04d}", Jsonb(variables)),
        )
        sql.execute(
            "INSERT INTO campaign_attempts (attempt_id, campaign_id, contact_id, tenant_id, "
            "attempt_no, state, call_sid) VALUES (%s, %s, %s, %s, 1, 'finished', %s)",
            (f"at_{uuid.uuid4().hex}", campaign_id, contact_id, tenant_id, sid),
        )
        sql.execute(
            "INSERT INTO calls (call_id, tenant_id, agent_id, twilio_call_sid, disposition, "
            "duration_ms) VALUES (%s, %s, 'acme-shop', %s, 'resolved', 1000)",
            (call_id, tenant_id, sid),
        )
        call_ids.append(call_id)
    return campaign_id, call_ids


def test_campaign_and_variable_filters_on_list_aggregate_and_export(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant
) -> None:
    first, first_calls = _campaign(
        sql, tenant.tenant_id, [{"plan": "gold", "region": "eu"}, {"plan": "basic"}]
    )
    second, second_calls = _campaign(sql, tenant.tenant_id, [{"plan": "gold"}])
    theirs, _ = _campaign(sql, other_tenant.tenant_id, [{"plan": "gold"}])
    sql.execute(
        "INSERT INTO calls (call_id, tenant_id, agent_id) VALUES (%s, %s, 'acme-shop')",
        (f"cf-inbound-{uuid.uuid4().hex[:6]}", tenant.tenant_id),
    )

    def listed(**query: Any) -> set[str]:
        reply = _get("/v1/calls", tenant, limit="100", **query)
        assert reply.status == 200, reply.body
        return {c["call_id"] for c in reply.json()["items"]}

    def counted(**query: Any) -> int:
        reply = _get("/v1/calls/aggregate", tenant, **query)
        assert reply.status == 200, reply.body
        return int(reply.json()["total_calls"])

    def exported(**query: Any) -> set[str]:
        reply = _get("/v1/calls/export", tenant, format="jsonl", **query)
        assert reply.status == 200, reply.body
        return {json.loads(line)["call_id"] for line in reply.body.splitlines()}

    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"campaign_id": first}, set(first_calls)),
        ({"campaign_id": [first, second]}, set(first_calls + second_calls)),
        ({"campaign_id": theirs}, set()),  # another tenant's campaign shows nothing
        ({"variable": "plan:gold"}, {first_calls[0], second_calls[0]}),
        ({"variable": ["plan:gold", "region"]}, {first_calls[0]}),
        ({"variable": "plan:gold", "campaign_id": second}, {second_calls[0]}),
        ({"variable": "region:us"}, set()),
    ]
    for query, expected in cases:
        assert listed(**query) == expected, query
        assert counted(**query) == len(expected), query
        assert exported(**query) == expected, query

    for bad in ({"campaign_id": "drop table"}, {"variable": "Plan:gold"}, {"variable": ":x"}):
        for path in ("/v1/calls", "/v1/calls/aggregate", "/v1/calls/export"):
            reply = _get(path, tenant, **bad)
            assert reply.status == 422, (path, bad, reply.status)


def test_tool_call_filters_from_projected_events(
    rt: Any, database_url: str, sql: psycopg.Connection[Any], tenant: Tenant, run: Any
) -> None:
    from shared.db import apply_events, connect
    from shared.events import CallEnded, CallStarted, Event, ToolCalled

    def call(*tools: tuple[str, bool]) -> list[Event]:
        call_id = f"tc-{uuid.uuid4().hex[:10]}"
        payloads: list[Any] = [CallStarted(agent_id="acme-shop")]
        payloads += [
            ToolCalled(turn_index=i, state=state, ok=ok, elapsed_ms=12.5, status=200 if ok else 500)
            for i, (state, ok) in enumerate(tools)
        ]
        payloads.append(CallEnded(reason="hangup", duration_ms=1000))
        return [
            Event(tenant_id=tenant.tenant_id, call_id=call_id, seq=i, payload=p)
            for i, p in enumerate(payloads)
        ]

    none, fine, failed = (
        call(),
        call(("lookup_order", True)),
        call(("lookup_order", True), ("refund", False)),
    )

    async def project() -> None:
        conn = await connect(database_url)
        async with conn:
            await apply_events(conn, none + fine + failed)
            await apply_events(conn, failed)  # a replay counts nothing twice
            await conn.commit()

    run(project())
    row = sql.execute(
        "SELECT tool_calls, tool_failures, tools FROM calls WHERE call_id = %s",
        (failed[0].call_id,),
    ).fetchone()
    assert row == {"tool_calls": 2, "tool_failures": 1, "tools": ["lookup_order", "refund"]}

    ids = {"none": none[0].call_id, "fine": fine[0].call_id, "failed": failed[0].call_id}
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"tool_calls": "true"}, {ids["fine"], ids["failed"]}),
        ({"tool_calls": "false"}, {ids["none"]}),
        ({"tool_failed": "true"}, {ids["failed"]}),
        ({"tool_failed": "false", "tool_calls": "true"}, {ids["fine"]}),
        ({"tool": "refund"}, {ids["failed"]}),
        ({"tool": ["refund", "lookup_order"]}, {ids["fine"], ids["failed"]}),
    ]
    for query, expected in cases:
        scoped = {**query, "started_after": "2026-01-01"}
        listed = _get("/v1/calls", tenant, limit="100", **scoped).json()["items"]
        assert {c["call_id"] for c in listed} & set(ids.values()) == expected, query
        exported = _get("/v1/calls/export", tenant, format="jsonl", **scoped).body.splitlines()
        records = {json.loads(x)["call_id"]: json.loads(x) for x in exported}
        assert set(records) & set(ids.values()) == expected, query
        counted = _get("/v1/calls/aggregate", tenant, **scoped).json()["total_calls"]
        assert counted == len(set(records)), query
    record = json.loads(
        next(
            x
            for x in _get(
                "/v1/calls/export", tenant, format="jsonl", tool="refund"
            ).body.splitlines()
        )
    )
    assert (record["tool_calls"], record["tool_failures"]) == (2, 1)
    assert _get("/v1/calls", tenant, tool="bad state!").status == 422


def test_a_slot_value_matches_as_text_whether_it_was_stored_as_a_string_number_or_boolean(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    stored = {"string": {"n": "42"}, "number": {"n": 42}, "decimal": {"n": 42.5},
              "boolean": {"ok": True}, "other": {"n": "x"}}  # fmt: skip
    ids = {}
    for role, slots in stored.items():
        ids[role] = f"sv-{uuid.uuid4().hex[:10]}"
        sql.execute(
            "INSERT INTO calls (call_id, tenant_id, agent_id, slots) VALUES (%s, %s, 'a', %s)",
            (ids[role], tenant.tenant_id, Jsonb(slots)),
        )

    def found(*slot: str) -> set[str]:
        reply = _get("/v1/calls", tenant, slot=list(slot))
        assert reply.status == 200, reply.body
        return {c["call_id"] for c in reply.json()["items"]}

    assert found("n:42") == {ids["string"], ids["number"]}
    assert found("n:42.5") == {ids["decimal"]}
    assert found("ok:true") == {ids["boolean"]}
    assert found("n:4") == set()  # the whole value, not a prefix
    assert found("n:x") == {ids["other"]}
    for odd in ("n:1e400", "n:NaN", "n:-Infinity", 'n:"42"', "n:null", "n:"):
        assert found(odd) == set(), odd  # never a 500
