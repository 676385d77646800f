"""The aggregate endpoint, multi-value filters, repeated parameters, the tenant's time zone and
cost per call, on the real PostgreSQL through the analytics Lambda handler."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from psycopg.types.json import Jsonb

from functions.analytics.app import handler
from tests.functions.conftest import Tenant, api_event, invoke

# 01:30 UTC on Tuesday 17 November is 20:30 on Monday the 16th in New York: days (and the first
# week) differ by zone.
DAY0 = datetime(2026, 11, 17, 1, 30, tzinfo=UTC)


def _get(tenant: Tenant, path: str, pairs: list[tuple[str, str]]) -> Any:
    event = api_event("analytics.get-v1-calls.json", tenant, path=path)
    event["rawQueryString"] = urlencode(pairs)
    event["queryStringParameters"] = {k: v for k, v in pairs} or None
    return invoke(handler, event)


def _aggregate(tenant: Tenant, *pairs: tuple[str, str]) -> Any:
    reply = _get(tenant, "/v1/calls/aggregate", list(pairs))
    assert reply.status == 200, reply.body
    return reply.json()


def _seed(sql: psycopg.Connection[Any], tenant_id: str) -> None:
    """12 calls: agents sales/support alternate; every third escalated; 60 s each."""
    for i in range(12):
        escalated = i % 3 == 0
        sql.execute(
            """INSERT INTO calls (call_id, tenant_id, agent_id, started_at, duration_ms,
                   disposition, intents, end_reason, escalation_reason, voice_to_voice_p50_ms,
                   asr_audio_ms, tts_chars, llm_tokens, slots)
               VALUES (%s, %s, %s, %s, 60000, %s, %s, %s, %s, %s, 30000, 500, 1000, %s)""",
            (
                f"a{i:02d}-{uuid.uuid4().hex[:6]}",
                tenant_id,
                "sales" if i % 2 else "support",
                DAY0 + timedelta(days=i),
                "escalated_to_human" if escalated else "resolved",
                ["refund", "order_status"] if i % 4 == 0 else ["order_status"],
                "transfer" if escalated else "hangup",
                "explicit_request" if escalated else None,
                500 + 100 * i,
                Jsonb({"order_id": f"A{i}"}),
            ),
        )


@pytest.fixture
def seeded(rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant) -> None:
    _seed(sql, tenant.tenant_id)
    _seed(sql, other_tenant.tenant_id)
    sql.execute(
        "UPDATE tenants SET settings = settings || %s WHERE tenant_id = %s",
        (
            Jsonb(
                {
                    "timezone": "America/New_York",
                    "prices": {"currency": "EUR", "per_minute": 0.01, "per_1k_llm_tokens": 0.5},
                }
            ),
            tenant.tenant_id,
        ),
    )


# The tenant's calls' analyses: (sentiment, success) per version, oldest first. The escalated
# calls were re-run and turned negative (the latest version wins); 7 has no verdict; 10 and 11
# have no analysis.
ANALYSES: dict[int, list[tuple[str, bool | None]]] = {
    **{i: [("positive", True), ("negative", False)] for i in (0, 3, 6, 9)},
    8: [("negative", False)],
    **{i: [("neutral", True)] for i in (1, 2, 4)},
    5: [("positive", True)],
    7: [("positive", None)],
}
# What the latest analysis extracted (earlier versions: nothing).
EXTRACTED = {9: {"order_number": 4572}, 8: {"order_number": 1234}}


@pytest.fixture
def analysed(seeded: None, sql: psycopg.Connection[Any], tenant: Tenant) -> None:
    for i, versions in ANALYSES.items():
        for version, (sentiment, success) in enumerate(versions, start=1):
            sql.execute(
                """INSERT INTO call_analyses (call_id, version, tenant_id, request_id, method,
                       model, summary, success, success_reason, sentiment, sentiment_score,
                       extracted)
                   SELECT call_id, %s, tenant_id, %s, 'local', 'test', 'a call', %s, '', %s, 0, %s
                   FROM calls WHERE tenant_id = %s AND call_id LIKE %s""",
                (
                    version,
                    f"ar_{uuid.uuid4().hex}",
                    success,
                    sentiment,
                    Jsonb(EXTRACTED.get(i, {}) if version == len(versions) else {}),
                    tenant.tenant_id,
                    f"a{i:02d}-%",
                ),
            )


def _counts(answer: Any, *keys: str) -> dict[tuple[Any, ...], int]:
    return {
        tuple(g["key"][k] for k in keys): g["calls"] for g in answer["groups"] if not g["subtotal"]
    }


def test_grouped_by_the_latest_analysis_sentiment_and_success(
    analysed: None, tenant: Tenant, other_tenant: Tenant
) -> None:
    by_sentiment = _aggregate(tenant, ("group_by", "sentiment"))
    # The rollup has no analyses: the calls rows answer, with exact percentiles.
    assert by_sentiment["percentiles"] == "exact"
    assert by_sentiment["total_calls"] == 12
    assert _counts(by_sentiment, "sentiment") == {
        ("negative",): 5,
        ("neutral",): 3,
        ("positive",): 2,
        (None,): 2,
    }
    negative = next(g for g in by_sentiment["groups"] if g["key"] == {"sentiment": "negative"})
    assert negative["share"] == round(5 / 12, 4) and negative["usage"]["minutes"] == 5
    by_success = _aggregate(tenant, ("group_by", "success"))
    assert _counts(by_success, "success") == {(False,): 5, (True,): 4, (None,): 3}
    # Another tenant's calls have no analyses: one null group, none of this tenant's.
    other = _aggregate(other_tenant, ("group_by", "sentiment"), ("group_by", "success"))
    assert _counts(other, "sentiment", "success") == {(None, None): 12}


def test_analysis_keys_combine_with_other_keys_subtotals_and_filters(
    analysed: None, tenant: Tenant
) -> None:
    # New York's 2026-11-16..22: calls 0..6.
    week = _aggregate(
        tenant,
        ("started_after", "2026-11-16"),
        ("started_before", "2026-11-23"),
        ("group_by", "agent"),
        ("group_by", "sentiment"),
        ("subtotals", "true"),
    )
    assert week["total_calls"] == 7 and week["percentiles"] == "exact"
    assert _counts(week, "agent", "sentiment") == {
        ("sales", "negative"): 1,
        ("sales", "neutral"): 1,
        ("sales", "positive"): 1,
        ("support", "negative"): 2,
        ("support", "neutral"): 2,
    }
    rows = {(tuple(sorted(g["key"].items())), g["subtotal"]): g for g in week["groups"]}
    assert rows[((("agent", "support"),), True)]["calls"] == 4
    assert rows[((("agent", "support"), ("sentiment", "negative")), False)]["rate"] == 0.5
    assert rows[((), True)]["calls"] == 7
    # A subtotal over a null group stays apart from that null group.
    support = _aggregate(
        tenant,
        ("agent_id", "support"),
        ("group_by", "sentiment"),
        ("group_by", "success"),
        ("subtotals", "true"),
    )
    assert _counts(support, "sentiment", "success") == {
        ("negative", False): 3,
        ("neutral", True): 2,
        (None, None): 1,
    }
    nulls = [g for g in support["groups"] if g["key"].get("sentiment", "-") is None]
    assert sorted((g["subtotal"], g["calls"]) for g in nulls) == [(False, 1), (True, 1)]
    # With the analysis filters: the negative calls' verdicts, and per agent and intent.
    unhappy = _aggregate(tenant, ("sentiment", "negative"), ("group_by", "success"))
    assert _counts(unhappy, "success") == {(False,): 5}
    succeeded = _aggregate(
        tenant, ("success", "true"), ("group_by", "sentiment"), ("group_by", "week")
    )
    assert _counts(succeeded, "sentiment", "week") == {
        ("neutral", "2026-11-16"): 3,
        ("positive", "2026-11-16"): 1,
    }


def test_bad_analysis_group_by_is_422(analysed: None, tenant: Tenant) -> None:
    for pairs in (
        [("group_by", "mood")],
        [("group_by", "sentiment"), ("group_by", "sentiment")],
        [("group_by", k) for k in ("sentiment", "success", "agent", "day")],
    ):
        reply = _get(tenant, "/v1/calls/aggregate", pairs)
        assert reply.status == 422, (pairs, reply.body)


def test_escalated_calls_last_week_per_agent_and_what_callers_asked_for(
    seeded: None, tenant: Tenant
) -> None:
    # The docs' example: one request.
    answer = _aggregate(
        tenant,
        ("disposition", "escalated_to_human"),
        ("started_after", "2026-11-16"),
        ("started_before", "2026-11-23"),
        ("group_by", "agent"),
        ("group_by", "intent"),
        ("subtotals", "true"),
    )
    assert answer["timezone"] == "America/New_York"
    # New York's 2026-11-16..22: calls 0..6 (call 0 is 20:30 on the 16th); escalated 0, 3, 6
    assert answer["total_calls"] == 3
    rows = {(tuple(sorted(g["key"].items())), g["subtotal"]): g for g in answer["groups"]}
    assert rows[((), True)]["calls"] == 3
    assert rows[((("agent", "support"),), True)]["calls"] == 2  # calls 0 and 6
    assert rows[((("agent", "sales"),), True)]["calls"] == 1  # call 3
    support_refund = rows[((("agent", "support"), ("intent", "refund")), False)]
    assert support_refund["calls"] == 1 and support_refund["rate"] == 0.5
    assert support_refund["share"] == round(1 / 3, 4)


def test_days_and_weeks_are_the_tenants(seeded: None, tenant: Tenant, other_tenant: Tenant) -> None:
    new_york = _aggregate(tenant, ("group_by", "day"), ("started_before", "2026-11-18"))
    assert [g["key"]["day"] for g in new_york["groups"]] == ["2026-11-16", "2026-11-17"]
    utc = _aggregate(other_tenant, ("group_by", "day"), ("started_before", "2026-11-18"))
    assert [g["key"]["day"] for g in utc["groups"]] == ["2026-11-17"]
    weeks = _aggregate(tenant, ("group_by", "week"))
    assert {g["key"]["week"]: g["calls"] for g in weeks["groups"]} == {
        "2026-11-16": 7,
        "2026-11-23": 5,
    }


def test_statistics_and_cost_are_summed(seeded: None, tenant: Tenant) -> None:
    # Only the calls rows answer a duration filter: exact percentiles.
    exact = _aggregate(tenant, ("min_duration_ms", "0"))
    assert exact["percentiles"] == "exact"
    (total,) = exact["groups"]
    assert total["calls"] == 12 and total["key"] == {}
    assert total["duration_ms"] == {"avg": 60000.0, "p50": 60000.0, "p95": 60000.0}
    assert total["latency_ms"]["p50"] == 1050.0 and total["latency_ms"]["avg"] == 1050.0
    # Without it, the rollup: the same counts, sums and averages, percentiles within 5%.
    rolled = _aggregate(tenant)
    assert rolled["percentiles"] == "histogram"
    (total,) = rolled["groups"]
    assert total["calls"] == 12 and total["duration_ms"]["avg"] == 60000.0
    assert total["duration_ms"]["p50"] == pytest.approx(60000, rel=0.05)
    assert total["latency_ms"]["p50"] == pytest.approx(1050, rel=0.05)
    assert total["latency_ms"]["avg"] == 1050.0
    usage = total["usage"]
    assert usage["minutes"] == 12 and usage["asr_seconds"] == 360 and usage["llm_tokens"] == 12000
    # 12 min x 0.01 + 12k tokens x 0.5 / 1k
    assert usage["cost"] == {"amount": 6.12, "currency": "EUR"}


def test_multi_value_filters_take_every_value(seeded: None, tenant: Tenant) -> None:
    both = _aggregate(tenant, ("disposition", "resolved"), ("disposition", "escalated_to_human"))
    assert both["total_calls"] == 12
    one = _aggregate(tenant, ("disposition", "resolved"))
    assert one["total_calls"] == 8
    assert _aggregate(tenant, ("escalated", "true"))["total_calls"] == 4
    assert _aggregate(tenant, ("end_reason", "transfer"), ("agent_id", "sales"))["total_calls"] == 2
    assert _aggregate(tenant, ("intent", "refund"), ("intent", "nothing"))["total_calls"] == 3
    assert (
        _aggregate(tenant, ("min_latency_ms", "1000"), ("max_latency_ms", "1200"))["total_calls"]
        == 3
    )
    assert _aggregate(tenant, ("slot", "order_id:A5"))["total_calls"] == 1
    assert _aggregate(tenant, ("slot", "order_id"))["total_calls"] == 12
    listed = _get(tenant, "/v1/calls", [("disposition", "resolved"), ("disposition", "x_y")])
    assert listed.status == 200 and len(listed.json()["items"]) == 8
    first = listed.json()["items"][0]
    assert first["primary_intent"] == "order_status"
    assert first["usage"]["cost"] == {"amount": 0.51, "currency": "EUR"}


@pytest.mark.parametrize("path", ["/v1/calls", "/v1/calls/aggregate"])
def test_a_repeated_single_value_parameter_is_a_400(
    seeded: None, tenant: Tenant, path: str
) -> None:
    reply = _get(tenant, path, [("started_after", "2026-11-01"), ("started_after", "2026-11-20")])
    assert reply.status == 400, reply.body
    assert reply.json()["error"]["details"][0]["field"] == "query.started_after"
    limit = _get(tenant, "/v1/calls", [("limit", "1"), ("limit", "1000")])
    assert limit.status == 400


def test_bad_aggregate_requests_are_422(seeded: None, tenant: Tenant) -> None:
    for pairs in (
        [("group_by", "colour")],
        [("group_by", "agent"), ("group_by", "agent")],
        [("started_after", "last tuesday")],
        [("slot", "Bad Name:1")],
        [("min_latency_ms", "900"), ("max_latency_ms", "100")],
    ):
        reply = _get(tenant, "/v1/calls/aggregate", pairs)
        assert reply.status == 422, (pairs, reply.body)


def test_the_docs_answer_each_question_with_one_request_as_written(
    analysed: None, tenant: Tenant
) -> None:
    import re
    from pathlib import Path
    from urllib.parse import parse_qsl, urlsplit

    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    block = r"```\nGET (/v1/calls/aggregate\?{}[^\n]+)\n```"
    escalated = re.search(block.format("disposition=escalated_to_human"), text)
    unhappy = re.search(block.format("sentiment=negative"), text)
    costly = re.search(r"`GET (/v1/calls/aggregate\?started_after=[^`]+)`", text)
    order = re.search(r"`GET (/v1/calls\?sentiment=negative[^`]+)`", text)
    assert escalated and unhappy and costly and order, "the examples moved in docs/api.md"

    def ask(request: str) -> Any:
        parts = urlsplit(request)
        reply = _get(tenant, parts.path, parse_qsl(parts.query))
        assert reply.status == 200, (request, reply.body)
        return reply.json()

    # 2026-11-23..29 in New York: calls 7..11 of the seed (6 is the 22nd's evening there);
    # of these only 9 (sales) was escalated.
    answer = ask(escalated.group(1))
    assert answer["total_calls"] == 1
    per_agent = {
        g["key"]["agent"]: g["calls"]
        for g in answer["groups"]
        if g["subtotal"] and set(g["key"]) == {"agent"}
    }
    assert per_agent == {"sales": 1}
    asked = {(g["key"]["agent"], g["key"]["intent"]) for g in answer["groups"] if not g["subtotal"]}
    assert asked == {("sales", "order_status")}
    # Unhappy callers (latest analysis negative) the same week: 8 (support, primary intent
    # refund) and 9 (sales, order_status).
    answer = ask(unhappy.group(1))
    assert answer["total_calls"] == 2
    per_agent = {
        g["key"]["agent"]: g["calls"]
        for g in answer["groups"]
        if g["subtotal"] and set(g["key"]) == {"agent"}
    }
    assert per_agent == {"sales": 1, "support": 1}
    asked = {(g["key"]["agent"], g["key"]["intent"]) for g in answer["groups"] if not g["subtotal"]}
    assert asked == {("sales", "order_status"), ("support", "refund")}
    # The unhappy callers from the 23rd on whose order number was 4572: call 9 alone (8 is
    # unhappy with another order).
    (listed,) = ask(order.group(1))["items"]
    assert listed["call_id"].startswith("a09-") and listed["sentiment"] == "negative"
    costs = ask(costly.group(1).replace("2026-12-01", "2026-11-01"))
    assert {g["key"]["agent"] for g in costs["groups"]} == {"sales", "support"}
    assert all(g["usage"]["cost"]["amount"] > 0 and g["latency_ms"]["p95"] for g in costs["groups"])


def test_listed_calls_carry_their_latest_analysis_in_one_query(
    analysed: None, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv
    import io

    statements: list[str] = []
    execute = psycopg.AsyncCursor.execute

    async def counted(self: psycopg.AsyncCursor[Any], query: Any, *args: Any, **kw: Any) -> Any:
        text = query if isinstance(query, str | bytes) else query.as_string(self.connection)
        statements.append(text.decode() if isinstance(text, bytes) else text)
        return await execute(self, query, *args, **kw)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted)
    latest = {i: versions[-1] for i, versions in ANALYSES.items()}
    for pairs, page_size in (
        ([("limit", "50")], 12),
        ([("limit", "5"), ("sort", "duration_ms")], 5),
    ):
        statements.clear()
        reply = _get(tenant, "/v1/calls", pairs)
        assert reply.status == 200, reply.body
        items = reply.json()["items"]
        assert len(items) == page_size
        for item in items:
            seed = int(item["call_id"][1:3])
            assert (item["sentiment"], item["success"]) == latest.get(seed, (None, None)), seed
        # One statement reads the analyses, however many calls the page has.
        assert sum("call_analyses" in s for s in statements) == 1, statements
    monkeypatch.undo()
    page = _get(tenant, "/v1/calls", [("sort", "started_at"), ("format", "csv")])
    rows = list(csv.DictReader(io.StringIO(page.body)))
    assert [(r["sentiment"], r["success"]) for r in rows[:2]] == [
        ("negative", "False"),
        ("neutral", "True"),
    ]
    assert (rows[10]["sentiment"], rows[10]["success"]) == ("", "")
    detail = _get(tenant, f"/v1/calls/{rows[7]['call_id']}", [])
    assert detail.status == 200, detail.body
    body = detail.json()
    assert (body["sentiment"], body["success"]) == ("positive", None)
    assert body["analysis"]["sentiment"] == "positive"
