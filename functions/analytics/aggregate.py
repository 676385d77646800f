"""GET /v1/calls/aggregate: counts, rates, duration, latency, usage and cost of the calls that
match the list's filters, grouped by any of agent, disposition, intent, end reason, escalation
reason, day or week (days and weeks in the tenant's time zone).

``intent`` groups by the call's primary intent (the first it showed), so each call is in exactly
one group and the groups add up to the total. Latency statistics are over the calls' median
voice-to-voice latencies. With ``subtotals=true`` each prefix of ``group_by`` gets a subtotal
row (ROLLUP), e.g. per agent and per agent and disposition in one answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from psycopg import sql

from functions.analytics.calls import cost_of
from functions.analytics.filters import CallFilter, call_filter
from functions.analytics.models import Aggregate, AggregateGroup, Stats, Usage
from functions.common.db import db, fetch_all
from functions.common.errors import ERROR_RESPONSES, ErrorResponse, invalid
from functions.common.negotiate import serves_json

router = APIRouter(tags=["calls"], responses=ERROR_RESPONSES)

GroupKey = Literal[
    "agent", "disposition", "intent", "end_reason", "escalation_reason", "day", "week"
]
MAX_KEYS = 3


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


def _stats(mean: Any, pair: list[float | None] | None) -> Stats:
    p50, p95 = (pair or [None, None])[:2]
    return Stats(
        avg=round(float(mean), 1) if mean is not None else None,
        p50=round(p50, 1) if p50 is not None else None,
        p95=round(p95, 1) if p95 is not None else None,
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
    exprs = [_key_sql(k, zone) for k in keys]
    selects = [
        sql.SQL("{} AS {}").format(e, sql.Identifier(f"k_{k}"))
        for e, k in zip(exprs, keys, strict=True)
    ]
    flags = [
        sql.SQL("GROUPING({}) AS {}").format(e, sql.Identifier(f"g_{k}"))
        for e, k in zip(exprs, keys, strict=True)
    ]
    if keys:
        grouping = sql.SQL("ROLLUP ({})" if subtotals else "{}").format(sql.SQL(", ").join(exprs))
        query = sql.SQL(
            "SELECT {selects}, {flags}, {metrics} FROM calls c WHERE {where} "
            "GROUP BY {grouping} ORDER BY {order}"
        ).format(
            selects=sql.SQL(", ").join(selects),
            flags=sql.SQL(", ").join(flags),
            metrics=_METRICS,
            where=f.sql(),
            grouping=grouping,
            order=sql.SQL(", ").join(
                sql.SQL("{} NULLS FIRST").format(sql.Identifier(f"k_{k}")) for k in keys
            ),
        )
    else:
        query = sql.SQL("SELECT {metrics} FROM calls c WHERE {where}").format(
            metrics=_METRICS, where=f.sql()
        )
    async with db() as conn:
        rows = await fetch_all(conn, query, f.params)

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
        groups=groups,
    )
