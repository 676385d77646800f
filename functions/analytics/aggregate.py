"""GET /v1/calls/aggregate: counts, rates, duration, latency, usage and cost of the calls that
match the list's filters, grouped by any of agent, disposition, intent, end reason, escalation
reason, day, week (days and weeks in the tenant's time zone), sentiment or success (of the call's
latest analysis; calls without one are the null group).

``intent`` groups by the call's primary intent (the first it showed), so each call is in exactly
one group and the groups add up to the total. Latency statistics are over the calls' median
voice-to-voice latencies. With ``subtotals=true`` each prefix of ``group_by`` gets a subtotal
row (ROLLUP), e.g. per agent and per agent and disposition in one answer.

Queries whose filters the aggregate rollup has columns for (tenant, agent, disposition, primary
intent, end reason, escalation reason, escalated, voicemail, time bounds) read the rollup
(migration 0363) for the whole days in range, the calls rows only for the partial days at the
ends, and the pending deltas: counts, sums and averages stay exact, p50/p95 come from the
rollup's histograms (``percentiles: "histogram"``). Any other filter reads the calls rows and
gives exact percentiles, as does grouping by sentiment or success: the rollup has no analysis
columns (an analysis is stored after the call's row, and re-runs replace which one is latest).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from psycopg import sql

from functions.analytics.calls import cost_of
from functions.analytics.filters import LATEST_ANALYSIS_ROW, CallFilter, call_filter
from functions.analytics.models import Aggregate, AggregateGroup, Stats, Usage
from functions.analytics.summaries import compact_if_needed
from functions.common.db import db, fetch_all
from functions.common.errors import ERROR_RESPONSES, ErrorResponse, invalid
from functions.common.negotiate import serves_json

router = APIRouter(tags=["calls"], responses=ERROR_RESPONSES)

GroupKey = Literal[
    "agent",
    "disposition",
    "intent",
    "end_reason",
    "escalation_reason",
    "day",
    "week",
    "sentiment",
    "success",
]
# Keys of the call's latest analysis: only the calls rows (joined to it) can group by them.
ANALYSIS_KEYS: frozenset[GroupKey] = frozenset({"sentiment", "success"})
MAX_KEYS = 3
# The rollup's histograms (migration 0363): bucket b holds [BASE * RATIO^b, BASE * RATIO^(b+1)).
RATIO = 1.1
DURATION_BUCKETS, DURATION_BASE_MS = 96, 1000.0
LATENCY_BUCKETS, LATENCY_BASE_MS = 48, 100.0
# Local midnight can fall in a DST change: edge windows reach this far past it, and the day
# (computed like the rollup's) decides.
EDGE_MARGIN = timedelta(hours=3)


def _key_sql(key: GroupKey, zone: str) -> sql.Composable:
    local = sql.SQL("(c.started_at AT TIME ZONE {})").format(sql.Literal(zone))
    return {
        "agent": sql.SQL("c.agent_id"),
        "disposition": sql.SQL("c.disposition"),
        "intent": sql.SQL("c.primary_intent"),
        "end_reason": sql.SQL("c.end_reason"),
        "escalation_reason": sql.SQL("c.escalation_reason"),
        "day": sql.SQL("{}::date::text").format(local),
        "week": sql.SQL("date_trunc('week', {})::date::text").format(local),
        "sentiment": sql.SQL("la.sentiment"),
        "success": sql.SQL("la.success"),
    }[key]


_METRICS = sql.SQL(
    """count(*) AS calls,
       COALESCE(sum(c.duration_ms), 0)::bigint AS duration_sum,
       avg(c.duration_ms) AS duration_avg,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY c.duration_ms) AS duration_p,
       avg(c.voice_to_voice_p50_ms) AS latency_avg,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY c.voice_to_voice_p50_ms)
           AS latency_p,
       COALESCE(sum(c.asr_audio_ms), 0)::bigint AS asr_ms,
       COALESCE(sum(c.tts_chars), 0)::bigint AS tts_chars,
       COALESCE(sum(c.llm_tokens), 0)::bigint AS llm_tokens"""
)


_ROLLUP_SUMS = [
    "calls",
    "duration_n",
    "duration_sum",
    "latency_n",
    "latency_sum",
    "asr_ms",
    "tts_chars",
    "llm_tokens",
]
_HISTOGRAMS = [f"dh{b}" for b in range(DURATION_BUCKETS)] + [
    f"lh{b}" for b in range(LATENCY_BUCKETS)
]
_ROLLUP_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(c)
    for c in [
        "tenant_id",
        "day",
        "agent_id",
        "disposition",
        "end_reason",
        "primary_intent",
        "escalation_reason",
        *_ROLLUP_SUMS,
        *_HISTOGRAMS,
    ]
)
_ROLLUP_METRICS = sql.SQL(", ").join(
    sql.SQL("COALESCE(sum(c.{0}), 0) AS {0}").format(sql.Identifier(c))
    for c in _ROLLUP_SUMS + _HISTOGRAMS
)


def _rollup_key_sql(key: GroupKey) -> sql.Composable:
    return {
        "agent": sql.SQL("c.agent_id"),
        "disposition": sql.SQL("c.disposition"),
        "intent": sql.SQL("c.primary_intent"),
        "end_reason": sql.SQL("c.end_reason"),
        "escalation_reason": sql.SQL("c.escalation_reason"),
        "day": sql.SQL("c.day::text"),
        # The Monday of the day's ISO week, in date arithmetic (no time zone conversions).
        "week": sql.SQL("(c.day - (extract(isodow FROM c.day)::int - 1))::text"),
    }[key]


def _local_midnight(moment: datetime, zone: ZoneInfo) -> bool:
    return moment.astimezone(zone).time() == time()


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _rollup_source(f: CallFilter) -> tuple[sql.Composable, list[Any]]:
    """The matching calls as rollup rows: the rollup and its pending deltas for whole local days
    in range, the calls rows (turned into rollup rows) for the partial days at either end."""
    zone = f.zone
    where = sql.SQL(" AND ").join(f.rollup_where)
    after, before = f.started_after, f.started_before
    days: list[sql.Composable] = []
    day_params: list[Any] = []
    edges: list[tuple[datetime, datetime, date | None]] = []  # [from, to), local day or None
    first = after.astimezone(zone).date() if after else None
    last = before.astimezone(zone).date() if before else None
    if after and before and first == last:
        edges.append((after, before, None))
        days.append(sql.SQL("false"))
    else:
        if after and first:
            if _local_midnight(after, zone):
                days.append(sql.SQL("c.day >= %s"))
                day_params.append(first)
            else:
                days.append(sql.SQL("c.day > %s"))
                day_params.append(first)
                end = _start_of(first + timedelta(days=1), zone) + EDGE_MARGIN
                edges.append((after, min(end, before) if before else end, first))
        if before and last:
            days.append(sql.SQL("c.day < %s"))
            day_params.append(last)
            if not _local_midnight(before, zone):
                start = _start_of(last, zone) - EDGE_MARGIN
                edges.append((max(start, after) if after else start, before, last))
    day_where = sql.SQL(" AND ").join([where, *days])
    parts = [
        sql.SQL("SELECT {} FROM call_aggregate_daily c WHERE {}").format(
            _ROLLUP_COLUMNS, day_where
        ),
        sql.SQL("SELECT {} FROM call_aggregate_deltas c WHERE {}").format(
            _ROLLUP_COLUMNS, day_where
        ),
    ]
    params = [*f.rollup_params, *day_params, *f.rollup_params, *day_params]
    for start, end, day in edges:
        local_day = sql.SQL("(c.started_at AT TIME ZONE %s)::date = %s" if day else "true")
        parts.append(
            sql.SQL(
                "SELECT r.* FROM calls c, LATERAL parley_call_aggregate_row(c, %s, 1) r "
                "WHERE {} AND c.started_at >= %s AND c.started_at < %s AND {}"
            ).format(where, local_day)
        )
        params += [f.settings.timezone, *f.rollup_params, start, end]
        params += [f.settings.timezone, day] if day else []
    return sql.SQL(" UNION ALL ").join(parts), params


def histogram_percentile(counts: list[int], q: float, base: float) -> float | None:
    """The q-quantile of a histogram of buckets [base * RATIO^b, base * RATIO^(b+1)), the way
    percentile_cont reads it: between the values at the two ranks around q * (n - 1), each read
    at its bucket's geometric middle (within 5% of it), so the answer is within 5% too."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * (total - 1)
    low, high = math.floor(rank), math.ceil(rank)

    def value(index: int) -> float:
        seen = 0
        for bucket, n in enumerate(counts):
            seen += n
            if seen > index:
                return float(base * RATIO ** (bucket + 0.5))
        return float(base * RATIO ** (len(counts) - 0.5))

    lower = value(low)
    return lower + (rank - low) * (value(high) - lower)


def _rollup_row(r: dict[str, Any]) -> dict[str, Any]:
    """A rollup answer row in the exact query's shape."""
    durations = [int(r[f"dh{b}"]) for b in range(DURATION_BUCKETS)]
    latencies = [int(r[f"lh{b}"]) for b in range(LATENCY_BUCKETS)]
    out = dict(r)
    out["duration_avg"] = r["duration_sum"] / r["duration_n"] if r["duration_n"] else None
    out["latency_avg"] = r["latency_sum"] / r["latency_n"] if r["latency_n"] else None
    out["duration_p"] = [histogram_percentile(durations, q, DURATION_BASE_MS) for q in (0.5, 0.95)]
    out["latency_p"] = [histogram_percentile(latencies, q, LATENCY_BASE_MS) for q in (0.5, 0.95)]
    return out


def _stats(mean: Any, pair: list[float | None] | None) -> Stats:
    p50, p95 = (pair or [None, None])[:2]
    return Stats(
        avg=round(float(mean), 1) if mean is not None else None,
        p50=round(p50, 1) if p50 is not None else None,
        p95=round(p95, 1) if p95 is not None else None,
    )


def _grouped(
    keys: list[GroupKey],
    exprs: list[sql.Composable],
    metrics: sql.Composable,
    source: sql.Composable,
    where: sql.Composable,
    subtotals: bool,
    having: sql.Composable,
) -> sql.Composable:
    if not keys:
        return sql.SQL("SELECT {} FROM {} WHERE {}").format(metrics, source, where)
    selects = [
        sql.SQL("{} AS {}").format(e, sql.Identifier(f"k_{k}"))
        for e, k in zip(exprs, keys, strict=True)
    ]
    flags = [
        sql.SQL("GROUPING({}) AS {}").format(e, sql.Identifier(f"g_{k}"))
        for e, k in zip(exprs, keys, strict=True)
    ]
    grouping = sql.SQL("ROLLUP ({})" if subtotals else "{}").format(sql.SQL(", ").join(exprs))
    return sql.SQL(
        "SELECT {selects}, {flags}, {metrics} FROM {source} WHERE {where} "
        "GROUP BY {grouping} HAVING {having} ORDER BY {order}"
    ).format(
        selects=sql.SQL(", ").join(selects),
        flags=sql.SQL(", ").join(flags),
        metrics=metrics,
        source=source,
        where=where,
        grouping=grouping,
        having=having,
        order=sql.SQL(", ").join(
            sql.SQL("{} NULLS FIRST").format(sql.Identifier(f"k_{k}")) for k in keys
        ),
    )


@router.get(
    "/v1/calls/aggregate",
    dependencies=[Depends(serves_json)],
    response_model=Aggregate,
    responses={406: {"model": ErrorResponse, "description": "Accept refuses JSON."}},
    summary="Counts, rates, duration, latency and cost of the matching calls, grouped",
)
async def aggregate_calls(
    f: CallFilter = Depends(call_filter),
    group_by: Annotated[
        list[GroupKey] | None,
        Query(max_length=MAX_KEYS, description="Repeat for several keys (at most 3)."),
    ] = None,
    subtotals: Annotated[
        bool, Query(description="Also a row for each prefix of group_by, and the total.")
    ] = False,
) -> Aggregate:
    keys: list[GroupKey] = list(group_by or [])
    if len(set(keys)) != len(keys):
        raise invalid("query.group_by", "each key at most once")
    zone = f.settings.timezone
    from_rollup = not f.exact_only and not ANALYSIS_KEYS.intersection(keys)
    if from_rollup:
        source, params = _rollup_source(f)
        query = _grouped(
            keys,
            [_rollup_key_sql(k) for k in keys],
            _ROLLUP_METRICS,
            sql.SQL("({}) c").format(source),
            sql.SQL("true"),
            subtotals,
            # A group whose calls were all deleted is still in the rollup, with zero calls.
            sql.SQL("sum(c.calls) <> 0"),
        )
    else:
        params = f.params
        source = sql.SQL("calls c")
        if ANALYSIS_KEYS.intersection(keys):
            source = sql.SQL("calls c LEFT JOIN LATERAL ({}) la ON true").format(
                sql.SQL(LATEST_ANALYSIS_ROW)
            )
        query = _grouped(
            keys,
            [_key_sql(k, zone) for k in keys],
            _METRICS,
            source,
            f.sql(),
            subtotals,
            sql.SQL("true"),
        )
    async with db() as conn:
        if from_rollup:
            await compact_if_needed(conn)
        rows = await fetch_all(conn, query, params)
    if from_rollup:
        rows = [_rollup_row(r) for r in rows]

    prices = f.settings.prices
    detail = [r for r in rows if not any(r.get(f"g_{k}") for k in keys)]
    total = sum(int(r["calls"]) for r in detail) if keys else int(rows[0]["calls"])
    parents: dict[Any, int] = {}
    if len(keys) > 1:
        for r in detail:
            parents[r[f"k_{keys[0]}"]] = parents.get(r[f"k_{keys[0]}"], 0) + int(r["calls"])
    groups = []
    for r in rows:
        calls = int(r["calls"])
        rolled = [k for k in keys if r.get(f"g_{k}")]
        key = {k: r[f"k_{k}"] for k in keys if k not in rolled}
        parent = parents.get(r[f"k_{keys[0]}"], total) if len(key) > 1 else total
        usage = Usage(
            minutes=round(int(r["duration_sum"]) / 60_000, 4),
            asr_seconds=round(int(r["asr_ms"]) / 1000, 3),
            tts_chars=int(r["tts_chars"]),
            llm_tokens=int(r["llm_tokens"]),
        )
        usage.cost = cost_of(usage, prices)
        groups.append(
            AggregateGroup(
                key=key,
                subtotal=bool(rolled),
                calls=calls,
                share=round(calls / total, 4) if total else 0.0,
                rate=round(calls / parent, 4) if parent else 0.0,
                duration_ms=_stats(r["duration_avg"], r["duration_p"]),
                latency_ms=_stats(r["latency_avg"], r["latency_p"]),
                usage=usage,
            )
        )
    return Aggregate(
        group_by=list(keys),
        timezone=zone,
        started_after=f.started_after,
        started_before=f.started_before,
        total_calls=total,
        percentiles="histogram" if from_rollup else "exact",
        groups=groups,
    )
