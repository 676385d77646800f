"""Disposition, intent and latency summaries over UTC days, from the daily rollups.

The rollup triggers (migration 0100) append deltas; a reader sums ``*_daily`` and the pending
``*_deltas`` so it is always exact. Once enough deltas pile up a reader folds them in
(``parley_compact_rollups()``); a scheduled ``parley api compact-rollups`` does the same.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from psycopg import AsyncConnection, sql

from functions.analytics.models import (
    AgentLatency,
    CountRate,
    LatencySummary,
    Summary,
    SummaryGroup,
)
from functions.common.auth import Principal, require
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, invalid

router = APIRouter(tags=["summaries"], responses=ERROR_RESPONSES)

GroupBy = Literal["day", "week", "agent", "total"]
MAX_DAYS = 366
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9999, 12, 31)
COMPACT_AFTER = 20_000
LATENCY_BUCKET_BASE = 1.025  # parley_latency_bucket(): buckets 2.5% wide
AgentQuery = Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
StartQuery = Annotated[
    date | None, Query(description="First UTC day (default: 29 days before end).")
]
EndQuery = Annotated[date | None, Query(description="Last UTC day, inclusive (default: today).")]

_GROUP_KEY = {
    "day": sql.SQL("day::text"),
    "week": sql.SQL("date_trunc('week', day)::date::text"),
    "agent": sql.SQL("agent_id"),
    "total": sql.SQL("'total'"),
}


def bucket_middle(bucket: int) -> float:
    """The geometric middle of a latency histogram bucket (migration 0100), in ms."""
    return round(float(LATENCY_BUCKET_BASE ** (bucket + 0.5)), 1)


def _day(value: date | None, field: str) -> date | None:
    if value is not None and not FIRST_DAY <= value <= LAST_DAY:
        raise invalid(field, f"must be between {FIRST_DAY} and {LAST_DAY}")
    return value


def _range(start: date | None, end: date | None) -> tuple[date, date]:
    end = _day(end, "query.end") or datetime.now(UTC).date()
    # Bounded days keep the default start (and PostgreSQL's date range) from overflowing.
    start = _day(start, "query.start") or max(end - timedelta(days=29), FIRST_DAY)
    if start > end:
        raise invalid("query.start", "must not be after end")
    if (end - start).days + 1 > MAX_DAYS:
        raise invalid("query.end", f"a summary covers at most {MAX_DAYS} days")
    return start, end


async def compact_if_needed(conn: AsyncConnection[Any]) -> None:
    row = await fetch_one(
        conn,
        "SELECT count(*) AS n FROM (SELECT 1 FROM call_rollup_deltas LIMIT %s) d",
        (COMPACT_AFTER,),
    )
    if row and row["n"] >= COMPACT_AFTER:
        await conn.execute("SELECT parley_compact_rollups()")
        await conn.commit()


def _rollup(table: str, columns: str, agent_id: str | None) -> sql.Composable:
    """daily rows + pending deltas of one rollup, for the tenant/start/end(/agent) parameters.

    The agent clause is left out rather than made optional with ``IS NULL OR``, so a prepared
    statement's generic plan stays as good as a custom one.
    """
    agent = sql.SQL(" AND agent_id = %(agent)s") if agent_id is not None else sql.SQL("")
    parts = [
        sql.SQL(
            "SELECT {cols} FROM {t} WHERE tenant_id = %(tenant)s "
            "AND day BETWEEN %(start)s AND %(end)s{agent}"
        ).format(cols=sql.SQL(columns), t=sql.Identifier(f"{table}_{suffix}"), agent=agent)
        for suffix in ("daily", "deltas")
    ]
    return sql.SQL(" UNION ALL ").join(parts)


async def _call_totals(
    conn: AsyncConnection[Any], params: dict[str, Any], group_by: GroupBy
) -> list[dict[str, Any]]:
    query = sql.SQL(
        "SELECT {key} AS key, disposition AS name, sum(calls)::bigint AS count "
        "FROM ({rollup}) r GROUP BY 1, 2 HAVING sum(calls) <> 0 ORDER BY 1, 2"
    ).format(
        key=_GROUP_KEY[group_by],
        rollup=_rollup("call_rollup", "day, agent_id, disposition, calls", params["agent"]),
    )
    return await fetch_all(conn, query, params)


def _groups(
    counts: list[dict[str, Any]], totals: dict[str, int] | None = None
) -> list[SummaryGroup]:
    by_key: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for row in counts:
        by_key[row["key"]].append((row["name"] or "none", int(row["count"])))
    keys = sorted(set(by_key) | set(totals or {}))
    groups = []
    for key in keys:
        items = by_key.get(key, [])
        calls = totals[key] if totals is not None else sum(n for _, n in items)
        groups.append(
            SummaryGroup(
                key=key,
                calls=calls,
                items=[
                    CountRate(name=name, count=n, rate=round(n / calls, 4) if calls else 0.0)
                    for name, n in sorted(items, key=lambda item: (-item[1], item[0]))
                ],
            )
        )
    return groups


@router.get(
    "/v1/dispositions/summary",
    response_model=Summary,
    summary="Disposition counts and rates by day, week, agent or in total",
)
async def dispositions_summary(
    principal: Principal = Depends(require("read")),
    start: StartQuery = None,
    end: EndQuery = None,
    group_by: Annotated[GroupBy, Query()] = "day",
    agent_id: AgentQuery = None,
) -> Summary:
    first, last = _range(start, end)
    params = {"tenant": principal.tenant_id, "start": first, "end": last, "agent": agent_id}
    async with db() as conn:
        await compact_if_needed(conn)
        rows = await _call_totals(conn, params, group_by)
    return Summary(start=first, end=last, group_by=group_by, groups=_groups(rows))


@router.get(
    "/v1/intents/summary",
    response_model=Summary,
    summary="How many calls showed each intent, by day, week, agent or in total",
)
async def intents_summary(
    principal: Principal = Depends(require("read")),
    start: StartQuery = None,
    end: EndQuery = None,
    group_by: Annotated[GroupBy, Query()] = "day",
    agent_id: AgentQuery = None,
) -> Summary:
    first, last = _range(start, end)
    params = {"tenant": principal.tenant_id, "start": first, "end": last, "agent": agent_id}
    query = sql.SQL(
        "SELECT {key} AS key, intent AS name, sum(calls)::bigint AS count "
        "FROM ({rollup}) r GROUP BY 1, 2 HAVING sum(calls) <> 0 ORDER BY 1, 2"
    ).format(
        key=_GROUP_KEY[group_by],
        rollup=_rollup("intent_rollup", "day, agent_id, intent, calls", agent_id),
    )
    async with db() as conn:
        await compact_if_needed(conn)
        rows = await fetch_all(conn, query, params)
        call_rows = await _call_totals(conn, params, group_by)
    totals: dict[str, int] = defaultdict(int)
    for row in call_rows:
        totals[row["key"]] += int(row["count"])
    return Summary(start=first, end=last, group_by=group_by, groups=_groups(rows, dict(totals)))


@router.get(
    "/v1/latency/summary",
    response_model=LatencySummary,
    summary="Voice-to-voice latency p50/p95 per agent",
)
async def latency_summary(
    principal: Principal = Depends(require("read")),
    start: StartQuery = None,
    end: EndQuery = None,
    agent_id: AgentQuery = None,
) -> LatencySummary:
    first, last = _range(start, end)
    params = {"tenant": principal.tenant_id, "start": first, "end": last, "agent": agent_id}
    query = sql.SQL(
        """WITH h AS (
               SELECT agent_id, bucket, sum(turns) AS n FROM ({rollup}) r
               GROUP BY 1, 2 HAVING sum(turns) > 0),
           c AS (
               SELECT agent_id, bucket,
                      sum(n) OVER (PARTITION BY agent_id ORDER BY bucket) AS cum,
                      sum(n) OVER (PARTITION BY agent_id) AS total FROM h)
           SELECT agent_id, max(total)::bigint AS turns,
                  min(bucket) FILTER (WHERE cum >= 0.5 * total) AS p50,
                  min(bucket) FILTER (WHERE cum >= 0.95 * total) AS p95
           FROM c GROUP BY agent_id ORDER BY agent_id"""
    ).format(rollup=_rollup("latency_rollup", "day, agent_id, bucket, turns", agent_id))
    async with db() as conn:
        await compact_if_needed(conn)
        rows = await fetch_all(conn, query, params)
    return LatencySummary(
        start=first,
        end=last,
        agents=[
            AgentLatency(
                agent_id=r["agent_id"] or "none",
                turns=int(r["turns"]),
                p50_ms=bucket_middle(int(r["p50"])),
                p95_ms=bucket_middle(int(r["p95"])),
            )
            for r in rows
        ],
    )
