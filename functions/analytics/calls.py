"""GET /v1/calls (filters, sort, cursor pages, CSV) and GET /v1/calls/{call_id}."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from psycopg import sql

from functions.analytics import cursor as cursors
from functions.analytics.models import (
    CallDetail,
    CallPage,
    CallSummary,
    IntentHit,
    LatencyTurn,
    StatusChange,
    Turn,
)
from functions.analytics.recording import recording_link
from functions.common.auth import Principal, require
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError, invalid

router = APIRouter(tags=["calls"], responses=ERROR_RESPONSES)

Sort = Literal["-started_at", "started_at", "-duration_ms", "duration_ms"]
Status = Literal[
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "canceled",
    "failed",
]
NAME = r"^[a-z][a-z0-9_]{0,63}$"
# Words, spaces and speech punctuation only: no quotes beyond apostrophes, no SQL syntax.
SEARCH = re.compile(r"^[\w\s'.,?!-]{1,200}$")
MAX_LIMIT = 1000
MAX_DURATION_MS = 86_400_000

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
    "started_at",
    "answered_at",
    "ended_at",
    "duration_ms",
    "end_reason",
    "summary",
]
_SORT_KEY = {
    "started_at": sql.SQL("c.started_at"),
    "duration_ms": sql.SQL("COALESCE(c.duration_ms, 0)"),
}
CSV_COLUMNS = _COLUMNS


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:  # in UTC, so an offset cannot carry the instant past year 9999 (or before 1970)
        utc = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not 1970 <= utc.year <= 9999:
        raise invalid(field, "must be between 1970 and 9999 (UTC)")
    return utc


def _wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _safe_cell(value: Any) -> Any:
    """Spreadsheet formula injection: free text starting with = + - @ is prefixed with '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") and not value[1:2].isdigit():
        return "'" + value
    return value


@router.get(
    "/v1/calls",
    response_model=CallPage,
    summary="Calls, newest first, filtered; cursor pages; CSV with Accept: text/csv",
    responses={200: {"content": {"text/csv": {}}}},
)
async def list_calls(
    request: Request,
    principal: Principal = Depends(require("read")),
    disposition: Annotated[str | None, Query(pattern=NAME)] = None,
    intent: Annotated[str | None, Query(pattern=NAME)] = None,
    agent_id: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = None,
    number: Annotated[
        str | None, Query(pattern=r"^\+[1-9][0-9]{6,14}$", description="Caller or dialled number.")
    ] = None,
    status: Annotated[Status | None, Query()] = None,
    started_after: Annotated[datetime | None, Query(description="ISO 8601; inclusive.")] = None,
    started_before: Annotated[datetime | None, Query(description="ISO 8601; exclusive.")] = None,
    min_duration_ms: Annotated[int | None, Query(ge=0, le=MAX_DURATION_MS)] = None,
    max_duration_ms: Annotated[int | None, Query(ge=0, le=MAX_DURATION_MS)] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Words to find in the transcripts.")
    ] = None,
    sort: Annotated[Sort, Query()] = "-started_at",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
) -> Any:
    after = _aware(started_after, "query.started_after")
    before = _aware(started_before, "query.started_before")
    if after and before and after >= before:
        raise invalid("query.started_before", "must be after started_after")
    if (
        min_duration_ms is not None
        and max_duration_ms is not None
        and min_duration_ms > max_duration_ms
    ):
        raise invalid("query.max_duration_ms", "must be at least min_duration_ms")
    if q is not None and (not SEARCH.match(q) or "--" in q or not q.strip()):
        raise invalid("query.q", "use words, spaces and . , ? ! ' - only")

    where: list[sql.Composable] = [sql.SQL("c.tenant_id = %s")]
    params: list[Any] = [principal.tenant_id]

    def add(clause: str, *values: Any) -> None:
        where.append(sql.SQL(clause))
        params.extend(values)

    if disposition is not None:
        add("c.disposition = %s", disposition)
    if intent is not None:
        add("c.intents @> ARRAY[%s]::text[]", intent)
    if agent_id is not None:
        add("c.agent_id = %s", agent_id)
    if number is not None:
        add("(c.from_number = %s OR c.to_number = %s)", number, number)
    if status is not None:
        add("c.status = %s", status)
    if after is not None:
        add("c.started_at >= %s", after)
    if before is not None:
        add("c.started_at < %s", before)
    if min_duration_ms is not None:
        add("c.duration_ms >= %s", min_duration_ms)
    if max_duration_ms is not None:
        add("c.duration_ms <= %s", max_duration_ms)
    if q is not None:
        add("c.transcript @@ websearch_to_tsquery('english', %s)", q)

    field = sort.lstrip("-")
    descending = sort.startswith("-")
    key = _SORT_KEY[field]
    if cursor is not None:
        value, last_id = cursors.decode(cursor, sort)
        op = sql.SQL("<") if descending else sql.SQL(">")
        where.append(sql.SQL("({}, c.call_id) {} (%s, %s)").format(key, op))
        params.extend([value, last_id])
    direction = sql.SQL("DESC") if descending else sql.SQL("ASC")
    query = sql.SQL(
        "SELECT {columns}, {key} AS sort_key FROM calls c WHERE {where} "
        "ORDER BY {key} {dir}, c.call_id {dir} LIMIT %s"
    ).format(
        columns=sql.SQL(", ").join(sql.SQL("c.") + sql.Identifier(col) for col in _COLUMNS),
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
    items = [CallSummary(**{k: r[k] for k in _COLUMNS}) for r in rows]

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
        writer.writerow(
            [
                _safe_cell(data[c]) if c in ("summary", "intents", "disposition") else data[c]
                for c in CSV_COLUMNS
            ]
        )
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
    return CallDetail(
        **{k: call[k] for k in _COLUMNS},
        twilio_call_sid=call["twilio_call_sid"],
        node_id=call["node_id"],
        slots=call["slots"] or {},
        turns=[Turn(**t) for t in turns],
        intent_hits=[IntentHit(**h) for h in hits],
        latency=[LatencyTurn(**row) for row in latency],
        voice_to_voice_p50_ms=median["p50"] if median else None,
        status_history=[StatusChange(**h) for h in history],
        recording_url=recording_link(request, call_id, call["recording_url"]),
    )
