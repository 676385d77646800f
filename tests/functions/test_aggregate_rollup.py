"""The aggregate rollup against the calls rows on the real PostgreSQL: a rollup answer has the
exact query's counts, sums and averages and percentiles within the histogram's 5%, for time
bounds on and off the tenant's midnights; deletions, updates and compaction keep it so."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from functions.admin.app import handler as admin
from functions.analytics.aggregate import histogram_percentile
from tests.functions.conftest import Tenant
from tests.functions.test_aggregate import _aggregate
from tests.functions.test_privacy_api import _send

START = datetime(2026, 10, 20, 5, 0, tzinfo=UTC)
AGENTS = ["sales", "support", "billing", None]
DISPOSITIONS = ["resolved", "escalated_to_human", "voicemail", "caller_hung_up", None]
INTENTS: list[list[str]] = [[], ["refund"], ["order_status", "refund"], ["store_hours"]]
NUMBERS = ["+15550001111", "+15550002222", "+15550003333"]
# Forces the calls rows without changing which calls match (every seeded call has a duration).
EXACT = ("min_duration_ms", "0")


@pytest.fixture
def calls(rt: Any, sql: psycopg.Connection[Any], tenant: Tenant) -> list[str]:
    sql.execute(
        "UPDATE tenants SET settings = settings || %s WHERE tenant_id = %s",
        (Jsonb({"timezone": "Europe/Berlin"}), tenant.tenant_id),
    )
    rng = random.Random(11)
    ids = [f"r{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(400)]
    rows = []
    for call_id in ids:
        escalated = rng.random() < 0.2
        rows.append(
            (
                call_id,
                tenant.tenant_id,
                rng.choice(AGENTS),
                START + timedelta(minutes=rng.randrange(40 * 24 * 60)),  # across a DST change
                int(2000 * 1.5 ** rng.uniform(0, 12)),
                rng.choice(DISPOSITIONS),
                rng.choice(INTENTS),
                "transfer" if escalated else rng.choice(["hangup", "silence"]),
                rng.choice(["explicit_request", "frustration"]) if escalated else None,
                None if rng.random() < 0.1 else rng.uniform(300, 3000),
                rng.randrange(60_000),
                rng.randrange(2000),
                rng.randrange(5000),
                rng.choice(NUMBERS),
            )
        )
    with sql.cursor() as cur:
        cur.executemany(
            """INSERT INTO calls (call_id, tenant_id, agent_id, started_at, duration_ms,
                   disposition, intents, end_reason, escalation_reason, voice_to_voice_p50_ms,
                   asr_audio_ms, tts_chars, llm_tokens, from_number)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            rows,
        )
    return ids


def _same(tenant: Tenant, *pairs: tuple[str, str]) -> dict[str, Any]:
    """The rollup's answer, checked against the calls rows' answer."""
    rolled = _aggregate(tenant, *pairs)
    exact = _aggregate(tenant, *pairs, EXACT)
    assert (rolled["percentiles"], exact["percentiles"]) == ("histogram", "exact")
    assert rolled["total_calls"] == exact["total_calls"]
    assert [(g["key"], g["subtotal"]) for g in rolled["groups"]] == [
        (g["key"], g["subtotal"]) for g in exact["groups"]
    ]
    for got, want in zip(rolled["groups"], exact["groups"], strict=True):
        for field in ("calls", "share", "rate", "usage"):
            assert got[field] == want[field], (got["key"], field)
        for stats in ("duration_ms", "latency_ms"):
            assert got[stats]["avg"] == pytest.approx(want[stats]["avg"], abs=0.11)
            for p in ("p50", "p95"):
                if want[stats][p] is None:
                    assert got[stats][p] is None
                else:
                    assert got[stats][p] == pytest.approx(want[stats][p], rel=0.05, abs=0.1)
    return rolled


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [("group_by", "agent")],
        [("group_by", "week"), ("group_by", "disposition")],
        [("group_by", "day")],
        [("group_by", "intent"), ("group_by", "end_reason"), ("subtotals", "true")],
        [("disposition", "resolved"), ("disposition", "voicemail"), ("group_by", "agent")],
        [("escalated", "true"), ("group_by", "escalation_reason")],
        [("voicemail", "false"), ("agent_id", "sales"), ("primary_intent", "refund")],
        # Bounds off the tenant's midnights: partial days come from the calls rows.
        [
            ("started_after", "2026-10-23T13:17:00"),
            ("started_before", "2026-11-19T07:45:00"),
            ("group_by", "day"),
        ],
        [("started_after", "2026-10-25T01:30:00+00:00"), ("group_by", "agent")],
        [("started_before", "2026-11-02T22:10:00"), ("group_by", "disposition")],
        # On midnights (dates), and within one day.
        [("started_after", "2026-10-25"), ("started_before", "2026-11-01"), ("group_by", "day")],
        [("started_after", "2026-11-05T08:00:00"), ("started_before", "2026-11-05T17:00:00")],
    ],
)
def test_rollup_answers_equal_the_calls_rows(
    calls: list[str], tenant: Tenant, pairs: list[tuple[str, str]]
) -> None:
    answer = _same(tenant, *pairs)
    assert answer["total_calls"] > 0


def test_updates_deletions_and_compaction_keep_the_rollup_exact(
    calls: list[str], sql: psycopg.Connection[Any], tenant: Tenant
) -> None:
    before = _same(tenant, ("group_by", "agent"))["total_calls"]
    # A call changing its outcome moves between groups; unchanged columns append nothing.
    sql.execute(
        "UPDATE calls SET disposition = 'failed', intents = intents || ARRAY['refund'] "
        "WHERE call_id = ANY(%s)",
        (calls[:30],),
    )
    pending = sql.execute("SELECT count(*) AS n FROM call_aggregate_deltas").fetchone()
    sql.execute("UPDATE calls SET summary = 'reviewed' WHERE call_id = ANY(%s)", (calls[:30],))
    assert sql.execute("SELECT count(*) AS n FROM call_aggregate_deltas").fetchone() == pending
    _same(tenant, ("group_by", "disposition"), ("group_by", "intent"))

    # One call and one caller's calls deleted through the admin API (retention's mechanism).
    assert _send(admin, "DELETE", f"/v1/calls/{calls[40]}", tenant).status == 200
    reply = _send(admin, "DELETE", f"/v1/callers/{NUMBERS[0]}", tenant)
    assert reply.status == 200, reply.body
    gone = 1 + reply.json()["calls"]
    assert reply.json()["calls"] > 50
    after = _same(tenant, ("group_by", "agent"), ("group_by", "day"), ("subtotals", "true"))
    assert after["total_calls"] == before - gone

    sql.execute("SELECT parley_compact_rollups()")
    assert sql.execute("SELECT count(*) AS n FROM call_aggregate_deltas").fetchone() == {"n": 0}
    assert _same(tenant, ("group_by", "agent"))["total_calls"] == before - gone
    # A new time zone moves every day: the rollup is rebuilt with it.
    sql.execute(
        "UPDATE tenants SET settings = settings || %s WHERE tenant_id = %s",
        (Jsonb({"timezone": "Asia/Tokyo"}), tenant.tenant_id),
    )
    _same(tenant, ("group_by", "day"), ("started_after", "2026-10-26T09:00:00"))


def test_histogram_percentiles_interpolate_like_percentile_cont() -> None:
    counts = [0] * 96
    counts[10] = 1  # [2594, 2853) ms
    counts[20] = 1  # [6727, 7400) ms
    assert histogram_percentile(counts, 0.0, 1000.0) == pytest.approx(1000 * 1.1**10.5)
    middle = (1000 * 1.1**10.5 + 1000 * 1.1**20.5) / 2
    assert histogram_percentile(counts, 0.5, 1000.0) == pytest.approx(middle)
    assert histogram_percentile([0] * 96, 0.5, 1000.0) is None
