"""GET /v1/calls/export: every call that matches the shared filters, streamed as CSV or JSON
lines, oldest first, with its slots, metadata, transcript, recording link, Twilio CallSid and
latest analysis (sentiment, success, extracted fields).

The rows come from a server-side cursor read in batches, so memory stays flat however many calls
match; each batch is written to the response as soon as it is read. Behind API Gateway + Lambda
an answer is buffered and at most 6 MB, so there a larger export is a 413 that points to the
export jobs (functions/analytics/export_jobs.py), which write the same rows to S3.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from psycopg import sql

from functions.analytics.calls import SELECT_COLUMNS, call_usage, safe_cell
from functions.analytics.filters import CallFilter, call_filter
from functions.common.db import db
from functions.common.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from functions.common.negotiate import choose
from functions.common.public_url import public_base_url

router = APIRouter(tags=["calls"], responses=ERROR_RESPONSES)

CSV = "text/csv"
JSON_LINES = "application/x-ndjson"
OFFERS = (CSV, JSON_LINES)
FORMATS = {"csv": CSV, "jsonl": JSON_LINES}
BATCH = 1000
# A Lambda answer (the whole JSON envelope) is at most 6 MiB; this leaves room for the headers.
LAMBDA_BODY_LIMIT = 6 * 1024 * 1024 - 64 * 1024

COLUMNS = [
    "call_id",
    "twilio_call_sid",
    "agent_id",
    "agent_version",
    "channel",
    "direction",
    "from_number",
    "to_number",
    "status",
    "disposition",
    "primary_intent",
    "intents",
    "escalation_reason",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_ms",
    "end_reason",
    "voice_to_voice_p50_ms",
    "tool_calls",
    "tool_failures",
    "tools",
    "minutes",
    "asr_seconds",
    "tts_chars",
    "llm_tokens",
    "cost",
    "currency",
    "summary",
    "slots",
    "metadata",
    "recording_url",
    "transcript",
    "analysis_version",
    "sentiment",
    "sentiment_score",
    "success",
    "success_reason",
    "extracted",
]
# Cells a caller or the agent could have put words in (spreadsheet formula injection).
_FREE_TEXT = {"summary", "intents", "tools", "disposition", "primary_intent", "end_reason",
              "slots", "metadata", "transcript", "success_reason", "extracted"}  # fmt: skip

_QUERY = (
    "SELECT {columns}, c.twilio_call_sid, c.slots, c.tool_calls, c.tool_failures, c.tools, "
    "c.recording_url AS stored_recording, c.recording_deleted_at, "
    "(SELECT jsonb_agg(jsonb_build_object('speaker', t.speaker, 'text', t.text, "
    "'start_ms', t.start_ms, 'end_ms', t.end_ms) ORDER BY t.start_ms, t.turn_index, t.speaker) "
    "FROM call_turns t WHERE t.call_id = c.call_id) AS turns, "
    "a.version AS analysis_version, a.summary AS analysis_summary, a.sentiment, "
    "a.sentiment_score, a.success, a.success_reason, a.extracted "
    "FROM calls c LEFT JOIN LATERAL (SELECT * FROM call_analyses x WHERE x.call_id = c.call_id "
    "ORDER BY x.version DESC LIMIT 1) a ON true "
    "WHERE {where} ORDER BY c.started_at, c.call_id"
)


def _record(row: dict[str, Any], f: CallFilter, base: str) -> dict[str, Any]:
    usage = call_usage(row, f.settings.prices)
    stored = row["stored_recording"]
    link = None
    if stored and row["recording_deleted_at"] is None:
        # The API's route, not a pre-signed URL: an export outlives a 15-minute link, and the
        # route redirects to a fresh one for a recording in S3.
        link = f"{base}/v1/calls/{quote(row['call_id'], safe='')}/recording"
    return {
        **{k: row[k] for k in COLUMNS if k in row and k not in ("slots", "metadata", "extracted")},
        # The latest analysis' summary (the LLM's when there is one), else the template's.
        "summary": row["analysis_summary"] or row["summary"],
        "extracted": row["extracted"] if row["analysis_version"] is not None else None,
        "minutes": usage.minutes,
        "asr_seconds": usage.asr_seconds,
        "tts_chars": usage.tts_chars,
        "llm_tokens": usage.llm_tokens,
        "cost": usage.cost.amount if usage.cost else None,
        "currency": usage.cost.currency if usage.cost else None,
        "slots": row["slots"] or {},
        "metadata": row["metadata"] or {},
        "recording_url": link,
        "transcript": row["turns"] or [],
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _csv_cell(name: str, value: Any) -> Any:
    if value is None:
        return ""
    if name in ("intents", "tools"):
        value = "|".join(value)
    elif name in ("slots", "metadata", "extracted"):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False) if value else ""
    elif name == "transcript":
        value = "\n".join(f"{t['speaker']}: {t['text']}" for t in value)
    elif isinstance(value, datetime):
        return value.isoformat()
    return safe_cell(value) if name in _FREE_TEXT else value


@dataclass
class Progress:
    """What an export wrote so far (an export job records it)."""

    rows: int = 0
    bytes: int = 0


async def _rows(
    f: CallFilter, base: str, progress: Progress
) -> AsyncIterator[list[dict[str, Any]]]:
    query = sql.SQL(_QUERY).format(columns=SELECT_COLUMNS, where=f.sql())
    async with db() as conn, conn.transaction():
        async with conn.cursor(name="calls_export") as cur:
            cur.itersize = BATCH
            await cur.execute(query, f.params)
            while batch := await cur.fetchmany(BATCH):
                progress.rows += len(batch)
                yield [_record(r, f, base) for r in batch]


async def _csv_stream(f: CallFilter, base: str, progress: Progress) -> AsyncIterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    yield out.getvalue().encode()
    async for batch in _rows(f, base, progress):
        out.seek(0)
        out.truncate()
        for record in batch:
            writer.writerow([_csv_cell(c, record[c]) for c in COLUMNS])
        yield out.getvalue().encode()


async def _json_lines(f: CallFilter, base: str, progress: Progress) -> AsyncIterator[bytes]:
    async for batch in _rows(f, base, progress):
        yield "".join(
            json.dumps(r, default=_json_default, ensure_ascii=False) + "\n" for r in batch
        ).encode()


async def export_body(
    f: CallFilter, base: str, media: str, progress: Progress | None = None
) -> AsyncGenerator[bytes, None]:
    """The export's bytes in chunks, one per batch of rows: the one row writer of the streamed
    answer, the buffered (Lambda) answer and the export jobs (analytics/export_jobs.py)."""
    progress = progress if progress is not None else Progress()
    chunks = _csv_stream(f, base, progress) if media == CSV else _json_lines(f, base, progress)
    async for chunk in chunks:
        progress.bytes += len(chunk)
        yield chunk


async def _buffered(body: AsyncGenerator[bytes, None], limit: int) -> bytes | None:
    """The whole body if its Lambda answer stays within ``limit`` bytes, else None (it stops
    reading there). The runtime sends the body as JSON text, escaped, so that is what counts."""
    parts: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(json.dumps(chunk.decode())) - 2
        if size > limit:
            await body.aclose()
            return None
        parts.append(chunk)
    return b"".join(parts)


@router.get(
    "/v1/calls/export",
    summary="Every matching call, streamed: CSV (Accept: text/csv) or JSON lines "
    "(Accept: application/x-ndjson); 406 for anything else",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                CSV: {"schema": {"type": "string"}},
                JSON_LINES: {"schema": {"type": "string"}},
            }
        },
        406: {
            "model": ErrorResponse,
            "description": "The Accept header allows neither CSV nor JSON lines.",
        },
        413: {
            "model": ErrorResponse,
            "description": "Deployed (API Gateway + Lambda), an answer over 6 MB cannot be "
            "sent: create an export job with POST /v1/exports and the same query.",
        },
    },
)
async def export_calls(
    request: Request,
    f: CallFilter = Depends(call_filter),
    format: Annotated[
        Literal["csv", "jsonl"] | None,
        Query(description="Choose without an Accept header (a link, curl): wins over Accept."),
    ] = None,
) -> Response:
    media = FORMATS[format] if format else choose(request.headers.get("accept"), OFFERS)
    base = public_base_url(request)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    extension = "csv" if media == CSV else "jsonl"
    body = export_body(f, base, media)
    headers = {"Content-Disposition": f'attachment; filename="calls-{stamp}.{extension}"'}
    if "aws.event" in request.scope:
        # Behind API Gateway the Lambda's answer is buffered whole and capped at 6 MB: a larger
        # one would fail as a bare 5xx after the work was done, so it is refused in words.
        whole = await _buffered(body, LAMBDA_BODY_LIMIT)
        if whole is None:
            raise ApiError(
                413,
                "this export is larger than the 6 MB a direct answer can carry here: create an "
                "export job with POST /v1/exports and the same query, and download its file",
            )
        return Response(whole, media_type=f"{media}; charset=utf-8", headers=headers)
    return StreamingResponse(body, media_type=f"{media}; charset=utf-8", headers=headers)
