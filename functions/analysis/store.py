"""Analysis requests and the analyses they make (migration 0370).

A request is the job workers' to-do: the consumer adds one (reason ``ended``) in the
transaction that projects a call's end, ``POST /v1/calls/{id}/analysis`` adds one (``rerun``).
The beat's sweep leases pending requests (a token, valid ``analysis_lease_s``) and sends a task
for each; the task analyses the call and stores the next version with the request's completion
and the ``call.analyzed`` webhook outcome, in one transaction. A request already done is not
stored twice (a task run twice, a lease that expired while its worker was still at it), and a
call's versions are numbered under a lock of the call, so two re-runs never take one number.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from functions.analysis.result import AnalysisResult
from functions.common.config import FunctionSettings
from functions.webhooks import outcomes
from shared.events import CallEnded, Event

ENDED = "ended"
RERUN = "rerun"
# What an analysis row shows (the API, the webhook, the export read these).
COLUMNS = (
    "version",
    "request_id",
    "agent_id",
    "agent_version",
    "method",
    "model",
    "summary",
    "success",
    "success_reason",
    "sentiment",
    "sentiment_score",
    "extracted",
    "extraction_valid",
    "extraction_errors",
    "failures",
    "created_at",
)


def new_request_id() -> str:
    return "ar_" + uuid.uuid4().hex


@dataclass(frozen=True)
class Leased:
    request_id: str
    token: str


async def request_for_ended(conn: AsyncConnection[Any], fresh: Sequence[Event]) -> int:
    """An ``ended`` request for each call whose end was just projected (once per call)."""
    return await request_for_calls(
        conn, [e.call_id for e in fresh if isinstance(e.payload, CallEnded)]
    )


async def request_for_calls(conn: AsyncConnection[Any], call_ids: Sequence[str]) -> int:
    """An ``ended`` request for each of these calls that has none yet (a call that ended, or
    that the lost-call sweep closed)."""
    if not call_ids:
        return 0
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO call_analysis_requests (request_id, call_id, tenant_id, reason) "
            "SELECT %s, call_id, tenant_id, 'ended' FROM calls WHERE call_id = %s "
            "ON CONFLICT (call_id) WHERE reason = 'ended' DO NOTHING",
            [(new_request_id(), call_id) for call_id in dict.fromkeys(call_ids)],
        )
        return max(cur.rowcount, 0)


async def request_rerun(conn: AsyncConnection[Any], tenant_id: str, call_id: str) -> str | None:
    """A re-run of the call's analysis; None when the tenant has no such call. A re-run asked
    for while one is still waiting is that one (asking twice analyses once)."""
    cur = await conn.execute(
        "SELECT call_id FROM calls WHERE call_id = %s AND tenant_id = %s FOR UPDATE",
        (call_id, tenant_id),
    )
    if await cur.fetchone() is None:
        return None
    cur = await conn.execute(
        "SELECT request_id FROM call_analysis_requests WHERE call_id = %s AND done_at IS NULL "
        "AND reason = %s ORDER BY requested_at LIMIT 1",
        (call_id, RERUN),
    )
    waiting = await cur.fetchone()
    if waiting is not None:
        return str(_value(waiting, "request_id"))
    request_id = new_request_id()
    await conn.execute(
        "INSERT INTO call_analysis_requests (request_id, call_id, tenant_id, reason) "
        "VALUES (%s, %s, %s, %s)",
        (request_id, call_id, tenant_id, RERUN),
    )
    return request_id


async def lease_due(
    conn: AsyncConnection[Any], settings: FunctionSettings, *, limit: int = 200
) -> list[Leased]:
    """Lease up to ``limit`` pending requests (committed before the tasks are sent); those
    tried ``analysis_max_attempts`` times are given up, with the last error kept."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE call_analysis_requests SET done_at = now(), "
            "error = COALESCE(error, 'the analysis did not finish') || "
            "' (given up after ' || attempts || ' attempts)' "
            "WHERE done_at IS NULL AND attempts >= %s "
            "AND (leased_until IS NULL OR leased_until < now())",
            (settings.analysis_max_attempts,),
        )
        cur = await conn.execute(
            """WITH due AS (
                   SELECT request_id FROM call_analysis_requests
                   WHERE done_at IS NULL AND (leased_until IS NULL OR leased_until < now())
                   ORDER BY requested_at LIMIT %s FOR UPDATE SKIP LOCKED)
               UPDATE call_analysis_requests r
               SET lease_token = md5(random()::text || r.request_id),
                   leased_until = now() + make_interval(secs => %s),
                   attempts = r.attempts + 1
               FROM due WHERE r.request_id = due.request_id
               RETURNING r.request_id, r.lease_token""",
            (limit, settings.analysis_lease_s),
        )
        rows = await cur.fetchall()
    return [Leased(_value(r, "request_id"), _value(r, "lease_token")) for r in rows]


@dataclass(frozen=True)
class PendingCall:
    request_id: str
    call_id: str
    tenant_id: str
    agent_id: str | None
    agent_version: int | None
    slots: dict[str, Any]
    summary: str | None
    disposition: str | None
    turns: list[tuple[str, str]]


async def pending_call(conn: AsyncConnection[Any], leased: Leased) -> PendingCall | None:
    """The leased request's call, or None when the request is done or no longer this lease's."""
    cur = await conn.execute(
        "SELECT r.request_id, c.call_id, c.tenant_id, c.agent_id, c.agent_version, c.slots, "
        "c.summary, c.disposition FROM call_analysis_requests r JOIN calls c USING (call_id) "
        "WHERE r.request_id = %s AND r.lease_token = %s AND r.done_at IS NULL",
        (leased.request_id, leased.token),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    call = dict(row)
    cur = await conn.execute(
        "SELECT speaker, text FROM call_turns WHERE call_id = %s "
        "ORDER BY start_ms, turn_index, speaker",
        (call["call_id"],),
    )
    turns = [(t["speaker"], t["text"]) for t in await cur.fetchall()]
    call["slots"] = call["slots"] or {}
    return PendingCall(**call, turns=turns)


async def failed(conn: AsyncConnection[Any], leased: Leased, error: str) -> None:
    """Why this try did not store an analysis; the lease ends, so the next sweep tries again."""
    await conn.execute(
        "UPDATE call_analysis_requests SET error = %s, leased_until = NULL, lease_token = NULL "
        "WHERE request_id = %s AND lease_token = %s AND done_at IS NULL",
        (error[:500], leased.request_id, leased.token),
    )


async def store(
    conn: AsyncConnection[Any], call: PendingCall, result: AnalysisResult
) -> int | None:
    """The next version of the call's analysis, the request done and the webhook outcome, in the
    caller's transaction; None when the request was done meanwhile (nothing is stored)."""
    cur = await conn.execute(
        "SELECT done_at FROM call_analysis_requests WHERE request_id = %s FOR UPDATE",
        (call.request_id,),
    )
    row = await cur.fetchone()
    if row is None or _value(row, "done_at") is not None:
        return None
    # One call's versions are numbered one at a time (the calls row stays free for the consumer).
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('call_analyses:' || %s))",
                       (call.call_id,))  # fmt: skip
    cur = await conn.execute(
        "SELECT COALESCE(max(version), 0) + 1 AS v FROM call_analyses WHERE call_id = %s",
        (call.call_id,),
    )
    version_row = await cur.fetchone()
    assert version_row is not None
    version = int(_value(version_row, "v"))
    data = asdict(result)
    cur = await conn.execute(
        "INSERT INTO call_analyses (call_id, version, tenant_id, request_id, agent_id, "
        "agent_version, method, model, summary, success, success_reason, sentiment, "
        "sentiment_score, extracted, extraction_valid, extraction_errors, failures) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        f"RETURNING {', '.join(COLUMNS)}",
        (
            call.call_id,
            version,
            call.tenant_id,
            call.request_id,
            call.agent_id,
            call.agent_version,
            data["method"],
            data["model"],
            data["summary"],
            data["success"],
            data["success_reason"],
            data["sentiment"],
            data["sentiment_score"],
            Jsonb(data["extracted"]),
            data["extraction_valid"],
            data["extraction_errors"],
            Jsonb(data["failures"]),
        ),
    )
    stored = await cur.fetchone()
    assert stored is not None
    await conn.execute(
        "UPDATE call_analysis_requests SET done_at = now(), version = %s, error = NULL, "
        "lease_token = NULL, leased_until = NULL WHERE request_id = %s",
        (version, call.request_id),
    )
    outcome = await outcomes.analyzed(conn, call.tenant_id, call.call_id, shown(dict(stored)))
    if outcome is not None:
        await outcomes.record(conn, [outcome])
    return version


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """An analysis row as the API and the webhook show it (JSON-ready)."""
    out = {k: row[k] for k in COLUMNS}
    out["created_at"] = row["created_at"].isoformat()
    return out


async def latest(
    conn: AsyncConnection[Any], tenant_id: str, call_id: str, *, version: int | None = None
) -> dict[str, Any] | None:
    """The call's latest analysis, or the given version."""
    cur = await conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM call_analyses WHERE call_id = %s AND tenant_id = %s "
        "AND (%s::integer IS NULL OR version = %s) ORDER BY version DESC LIMIT 1",
        (call_id, tenant_id, version, version),
    )
    row = await cur.fetchone()
    return shown(dict(row)) if row is not None else None


async def versions(conn: AsyncConnection[Any], tenant_id: str, call_id: str) -> list[int]:
    cur = await conn.execute(
        "SELECT version FROM call_analyses WHERE call_id = %s AND tenant_id = %s ORDER BY version",
        (call_id, tenant_id),
    )
    return [int(_value(r, "version")) for r in await cur.fetchall()]


async def waiting(
    conn: AsyncConnection[Any], tenant_id: str, call_id: str
) -> dict[str, Any] | None:
    """The call's latest request when no analysis came of it yet: still to do (``done_at``
    null) or given up (its ``error``)."""
    cur = await conn.execute(
        "SELECT request_id, reason, requested_at, attempts, error, done_at, version FROM "
        "call_analysis_requests WHERE call_id = %s AND tenant_id = %s "
        "ORDER BY requested_at DESC LIMIT 1",
        (call_id, tenant_id),
    )
    row = await cur.fetchone()
    if row is None or (row["done_at"] is not None and row["version"] is not None):
        return None
    return dict(row)


def _value(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, dict) else row[0]
