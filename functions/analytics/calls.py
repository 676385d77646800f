"""GET /v1/calls (filters, sort, cursor pages, CSV) and GET /v1/calls/{call_id}."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from psycopg import sql

from functions.admin.models import Prices
from functions.analysis import store as analyses
from functions.analytics import cursor as cursors
from functions.analytics.filters import (
    LATEST_ANALYSIS_ROW,
    CallFilter,
    call_filter,
    tenant_settings,
)
from functions.analytics.models import (
    CallAnalysis,
    CallDetail,
    CallPage,
    CallSummary,
    Cost,
    IntentHit,
    LatencyTurn,
    StatusChange,
    Turn,
    Usage,
)
from functions.analytics.recording import recording_link
from functions.common.auth import Principal, require
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from functions.common.negotiate import choose

router = APIRouter(tags=["calls"], responses=ERROR_RESPONSES)

Sort = Literal["-started_at", "started_at", "-duration_ms", "duration_ms"]
MAX_LIMIT = 1000

_COLUMNS = [
    "call_id",
    "agent_id",
    "agent_version",
    "channel",
    "direction",
    "from_number",
    "to_number",
    "status",
    "disposition",
    "intents",
    "primary_intent",
    "escalation_reason",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_ms",
    "end_reason",
    "voice_to_voice_p50_ms",
    "summary",
    "metadata",
]
# What a call used; with the tenant's prices they make its cost.
USAGE_COLUMNS = ["asr_audio_ms", "tts_chars", "llm_tokens"]
_SORT_KEY = {
    "started_at": sql.SQL("c.started_at"),
    "duration_ms": sql.SQL("COALESCE(c.duration_ms, 0)"),
}
# Of the call's latest analysis (null when it has none), read in the list's one query.
ANALYSIS_COLUMNS = ["sentiment", "success"]
CSV_COLUMNS = [*_COLUMNS, "cost", *ANALYSIS_COLUMNS]
SELECT_COLUMNS = sql.SQL(", ").join(
    sql.SQL("c.") + sql.Identifier(col) for col in [*_COLUMNS, *USAGE_COLUMNS]
)


def call_usage(row: dict[str, Any], prices: Prices) -> Usage:
    """What one call used, and what that costs at the tenant's prices."""
    usage = Usage(
        minutes=round((row["duration_ms"] or 0) / 60_000, 4),
        asr_seconds=round((row["asr_audio_ms"] or 0) / 1000, 3),
        tts_chars=int(row["tts_chars"] or 0),
        llm_tokens=int(row["llm_tokens"] or 0),
    )
    usage.cost = cost_of(usage, prices)
    return usage


def cost_of(usage: Usage, prices: Prices) -> Cost:
    amount = (
        usage.minutes * prices.per_minute
        + usage.asr_seconds / 60 * prices.per_asr_minute
        + usage.tts_chars / 1000 * prices.per_1k_tts_chars
        + usage.llm_tokens / 1000 * prices.per_1k_llm_tokens
    )
    return Cost(amount=round(amount, 6), currency=prices.currency)


def call_summary(row: dict[str, Any], prices: Prices) -> CallSummary:
    return CallSummary(
        **{k: row[k] for k in _COLUMNS},
        **{k: row.get(k) for k in ANALYSIS_COLUMNS},
        usage=call_usage(row, prices),
    )


def _wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "csv"
    return choose(request.headers.get("accept"), ("application/json", "text/csv")) == "text/csv"


_FREE_TEXT = {"summary", "intents", "disposition", "primary_intent", "end_reason", "metadata"}


def safe_cell(value: Any) -> Any:
    """Spreadsheet formula injection: free text starting with = + - @ is prefixed with '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") and not value[1:2].isdigit():
        return "'" + value
    return value


@router.get(
    "/v1/calls",
    response_model=CallPage,
    summary="Calls, newest first, filtered; cursor pages; CSV with Accept: text/csv",
    responses={
        200: {"content": {"text/csv": {}}},
        406: {"model": ErrorResponse, "description": "Accept refuses both JSON and CSV."},
    },
)
async def list_calls(
    request: Request,
    f: CallFilter = Depends(call_filter),
    sort: Annotated[Sort, Query()] = "-started_at",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
) -> Any:
    where, params = list(f.where), list(f.params)
    field = sort.lstrip("-")
    descending = sort.startswith("-")
    key = _SORT_KEY[field]
    if cursor is not None:
        value, last_id = cursors.decode(cursor, sort)
        op = sql.SQL("<") if descending else sql.SQL(">")
        where.append(sql.SQL("({}, c.call_id) {} (%s, %s)").format(key, op))
        params.extend([value, last_id])
    direction = sql.SQL("DESC") if descending else sql.SQL("ASC")
    # The page's calls' latest analyses in the same query, not a query per call: joined after
    # the LIMIT, so only the page's rows are looked up (by the call_analyses_latest index),
    # whatever the sort.
    query = sql.SQL(
        "SELECT c.*, la.sentiment, la.success FROM ("
        "SELECT {columns}, {key} AS sort_key FROM calls c WHERE {where} "
        "ORDER BY {key} {dir}, c.call_id {dir} LIMIT %s) c "
        "LEFT JOIN LATERAL ({latest}) la ON true ORDER BY c.sort_key {dir}, c.call_id {dir}"
    ).format(
        columns=SELECT_COLUMNS,
        latest=sql.SQL(LATEST_ANALYSIS_ROW),
        key=key,
        where=sql.SQL(" AND ").join(where),
        dir=direction,
    )
    params.append(limit + 1)
    async with db() as conn:
        rows = await fetch_all(conn, query, params)

    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = cursors.encode(sort, last["sort_key"], last["call_id"])
    items = [call_summary(r, f.settings.prices) for r in rows]

    if _wants_csv(request, format):
        return _csv(items, next_cursor)
    return CallPage(items=items, next_cursor=next_cursor)


def _csv(items: list[CallSummary], next_cursor: str | None) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        data = item.model_dump(mode="json")
        data["intents"] = "|".join(item.intents)
        data["cost"] = item.usage.cost.amount if item.usage.cost else None
        data["metadata"] = json.dumps(item.metadata, sort_keys=True) if item.metadata else ""
        writer.writerow([safe_cell(data[c]) if c in _FREE_TEXT else data[c] for c in CSV_COLUMNS])
    headers = {"X-Next-Cursor": next_cursor} if next_cursor else {}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get(
    "/v1/calls/{call_id}",
    response_model=CallDetail,
    summary="One call: transcript, intents, slots, disposition, latency, recording",
)
async def get_call(
    request: Request,
    call_id: str = Path(min_length=1, max_length=128),
    principal: Principal = Depends(require("read")),
) -> CallDetail:
    async with db() as conn:
        call = await fetch_one(
            conn,
            "SELECT * FROM calls WHERE call_id = %s AND tenant_id = %s",
            (call_id, principal.tenant_id),
        )
        if call is None:
            raise ApiError(404, f"no call '{call_id}'")
        turns = await fetch_all(
            conn,
            """SELECT speaker, turn_index, text, start_ms, end_ms, confidence, source,
                      interrupted, state
               FROM call_turns WHERE call_id = %s ORDER BY start_ms, turn_index, speaker""",
            (call_id,),
        )
        hits = await fetch_all(
            conn,
            "SELECT turn_index, intent, confidence, source FROM call_intents WHERE call_id = %s "
            "ORDER BY turn_index, intent",
            (call_id,),
        )
        latency = await fetch_all(
            conn,
            """SELECT turn_index, endpoint_ms, asr_ms, dialogue_first_text_ms, tts_first_audio_ms,
                      voice_to_voice_ms FROM call_latency WHERE call_id = %s ORDER BY turn_index""",
            (call_id,),
        )
        median = await fetch_one(
            conn,
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY voice_to_voice_ms) AS p50 "
            "FROM call_latency WHERE call_id = %s",
            (call_id,),
        )
        analysis = await analyses.latest(conn, principal.tenant_id, call_id)
        history: list[dict[str, Any]] = []
        if call["twilio_call_sid"]:
            history = await fetch_all(
                conn,
                """SELECT status, sequence_number, callback_at, received_at
                   FROM call_status_events WHERE call_sid = %s AND in_history
                   ORDER BY sequence_number NULLS LAST, callback_at NULLS LAST, received_at,
                            status_rank""",
                (call["twilio_call_sid"],),
            )
    settings = await tenant_settings(principal.tenant_id)
    return CallDetail(
        **{k: call[k] for k in _COLUMNS if k != "voice_to_voice_p50_ms"},
        usage=call_usage(call, settings.prices),
        twilio_call_sid=call["twilio_call_sid"],
        node_id=call["node_id"],
        slots=call["slots"] or {},
        turns=[Turn(**t) for t in turns],
        intent_hits=[IntentHit(**h) for h in hits],
        latency=[LatencyTurn(**row) for row in latency],
        voice_to_voice_p50_ms=median["p50"] if median else None,
        status_history=[StatusChange(**h) for h in history],
        recording_url=recording_link(request, call_id, call["recording_url"]),
        sentiment=analysis["sentiment"] if analysis is not None else None,
        success=analysis["success"] if analysis is not None else None,
        analysis=CallAnalysis(**analysis) if analysis is not None else None,
    )
