"""Call rows for the voice webhooks: created once per CallSid, moved forward only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from functions.common.db import fetch_one
from shared.db.projection import STATUS_RANK

UNROUTED_TENANT = "_unrouted"  # calls to numbers no tenant owns; visible to operators only


@dataclass(frozen=True)
class Route:
    tenant_id: str
    agent_id: str
    active_version: int | None
    recording: bool
    tenant_settings: dict[str, Any]


@dataclass(frozen=True)
class NewCall:
    """What a voice webhook tells us about a call."""

    call_sid: str
    from_number: str
    to_number: str
    direction: str
    status: str
    metadata: dict[str, str] = field(default_factory=dict)  # the API client's keys
    variables: dict[str, str] = field(default_factory=dict)  # for the agent ({{ vars.NAME }})


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex


def _route(row: dict[str, Any] | None) -> Route | None:
    if row is None:
        return None
    return Route(
        row["tenant_id"],
        row["agent_id"],
        row["active_version"],
        row["recording"],
        dict(row["settings"] or {}),
    )


async def lookup_route(conn: AsyncConnection[Any], call_sid: str, number: str) -> Route | None:
    """Who answers this call: the agent of a call we already know (an outbound call we placed,
    a retried webhook), else the agent routed to our phone number."""
    row = await fetch_one(
        conn,
        """WITH target AS (
               SELECT tenant_id, agent_id, 1 AS preference FROM calls
               WHERE twilio_call_sid = %s AND agent_id IS NOT NULL
               UNION ALL
               SELECT tenant_id, agent_id, 2 FROM phone_numbers WHERE number = %s)
           SELECT a.tenant_id, a.agent_id, a.active_version, a.recording, t.settings
           FROM target
           JOIN agents a ON a.tenant_id = target.tenant_id AND a.agent_id = target.agent_id
           JOIN tenants t ON t.tenant_id = a.tenant_id
           ORDER BY target.preference LIMIT 1""",
        (call_sid, number),
    )
    return _route(row)


async def agent_route(conn: AsyncConnection[Any], tenant_id: str, agent_id: str) -> Route | None:
    row = await fetch_one(
        conn,
        """SELECT a.tenant_id, a.agent_id, a.active_version, a.recording, t.settings
           FROM agents a JOIN tenants t ON t.tenant_id = a.tenant_id
           WHERE a.tenant_id = %s AND a.agent_id = %s""",
        (tenant_id, agent_id),
    )
    return _route(row)


@dataclass(frozen=True)
class RecordedCall:
    call_id: str
    known: bool  # the row was there before this webhook (a retry, a replay, an outbound call)
    settled: bool  # it already had a media stream or is over: nothing may change it now


async def record_call(
    conn: AsyncConnection[Any],
    call: NewCall,
    route: Route | None,
    *,
    node_id: str | None = None,
    end: tuple[str, str] | None = None,
) -> RecordedCall:
    """Insert the call (one row per CallSid) and return its id.

    A retried webhook finds the row and gets the same id; until the media stream has started,
    the retry's outcome (a node, or ``end`` = disposition and reason) replaces the earlier one,
    because Twilio acts on the last answer. A row without either (an outbound call we just
    placed) leaves what the webhook already recorded. A call that already had a stream, or is
    over, is left exactly as it is (``settled``): a replayed webhook must not rewrite it.
    """
    disposition, reason = end if end else (None, None)
    row = await fetch_one(
        conn,
        """INSERT INTO calls (call_id, tenant_id, agent_id, agent_version, twilio_call_sid,
               from_number, to_number, direction, status, status_rank, node_id, disposition,
               end_reason, metadata, variables)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (twilio_call_sid) DO UPDATE SET
               node_id = COALESCE(EXCLUDED.node_id, calls.node_id),
               disposition = CASE
                   WHEN EXCLUDED.disposition IS NOT NULL THEN EXCLUDED.disposition
                   WHEN EXCLUDED.node_id IS NOT NULL THEN NULL
                   ELSE calls.disposition END,
               end_reason = CASE
                   WHEN EXCLUDED.disposition IS NOT NULL THEN EXCLUDED.end_reason
                   WHEN EXCLUDED.node_id IS NOT NULL THEN NULL
                   ELSE calls.end_reason END,
               updated_at = now()
           WHERE calls.stream_sid IS NULL AND calls.status_rank < 3 AND calls.ended_at IS NULL
           RETURNING call_id, xmax <> 0 AS known""",
        (
            new_call_id(),
            route.tenant_id if route else UNROUTED_TENANT,
            route.agent_id if route else None,
            route.active_version if route else None,
            call.call_sid,
            call.from_number,
            call.to_number,
            call.direction,
            call.status,
            STATUS_RANK.get(call.status, 0),
            node_id,
            disposition,
            reason,
            Jsonb(call.metadata),
            Jsonb(call.variables),
        ),
    )
    if row is not None:
        return RecordedCall(str(row["call_id"]), known=bool(row["known"]), settled=False)
    settled = await fetch_one(
        conn, "SELECT call_id FROM calls WHERE twilio_call_sid = %s", (call.call_sid,)
    )
    assert settled is not None
    return RecordedCall(str(settled["call_id"]), known=True, settled=True)


async def attach(
    conn: AsyncConnection[Any],
    call_sid: str,
    metadata: dict[str, str],
    variables: dict[str, str],
) -> None:
    """Add what the API client attached to an existing call row; keys it already has keep
    their values (a record of a call only grows)."""
    if not metadata and not variables:
        return
    await conn.execute(
        "UPDATE calls SET metadata = %s || metadata, variables = %s || variables, "
        "updated_at = now() WHERE twilio_call_sid = %s",
        (Jsonb(metadata), Jsonb(variables), call_sid),
    )


async def agent_variables(conn: AsyncConnection[Any], call_sid: str) -> dict[str, str]:
    """The variables the API client gave the agent of a call it placed (none for others)."""
    row = await fetch_one(
        conn, "SELECT variables FROM calls WHERE twilio_call_sid = %s", (call_sid,)
    )
    return {str(k): str(v) for k, v in ((row or {}).get("variables") or {}).items()}


@dataclass(frozen=True)
class StatusApplied:
    known: bool  # the CallSid is one of our calls (nothing is stored for others)
    changed: bool  # the call row changed
    in_history: bool  # shown in the call's status history (not a duplicate, not late)


async def apply_status(
    conn: AsyncConnection[Any],
    *,
    call_sid: str,
    status: str,
    sequence_number: int | None,
    at: datetime | None,
    duration_ms: int | None,
) -> StatusApplied:
    """Record a status callback and move the call forward only.

    Every callback of a known call is kept as received; it is part of the visible history only
    if it comes in order: after no shown callback that is terminal, of a later status, or later
    by Twilio's ``SequenceNumber`` / ``Timestamp``. A late ``in-progress`` still says when the
    call was answered. The call row is locked first, so concurrent callbacks take turns."""
    call = await fetch_one(
        conn, "SELECT call_id FROM calls WHERE twilio_call_sid = %s FOR UPDATE", (call_sid,)
    )
    if call is None:
        return StatusApplied(known=False, changed=False, in_history=False)
    rank = STATUS_RANK[status]
    values = {
        "rank": rank,
        "status": status,
        "seq": sequence_number,
        "at": at,
        "duration": duration_ms,
        "sid": call_sid,
    }
    recorded = await fetch_one(
        conn,
        """INSERT INTO call_status_events
               (call_sid, status, status_rank, sequence_number, callback_at, in_history)
           SELECT %(sid)s, %(status)s, %(rank)s, %(seq)s, %(at)s, NOT EXISTS (
               SELECT 1 FROM call_status_events e
               WHERE e.call_sid = %(sid)s AND e.in_history
                 AND (e.status_rank >= 3 OR e.status_rank > %(rank)s
                      OR e.sequence_number > %(seq)s::integer
                      OR e.callback_at > %(at)s::timestamptz))
           ON CONFLICT DO NOTHING
           RETURNING in_history""",
        values,
    )
    cursor = await conn.execute(
        """WITH s AS (SELECT %(status)s::text AS status, %(rank)s::smallint AS rank,
                             COALESCE(%(at)s::timestamptz, now()) AS at,
                             %(at)s::timestamptz IS NOT NULL AS stamped,
                             %(duration)s::integer AS duration)
           UPDATE calls c SET
               status = CASE WHEN c.status_rank < s.rank THEN s.status ELSE c.status END,
               status_rank = GREATEST(c.status_rank, s.rank),
               answered_at = COALESCE(c.answered_at, CASE WHEN s.status = 'in-progress'
                   AND (c.status_rank < s.rank OR s.stamped) THEN s.at END),
               ended_at = COALESCE(c.ended_at, CASE WHEN s.rank = 3 THEN s.at END),
               duration_ms = COALESCE(c.duration_ms, CASE WHEN s.rank = 3 THEN s.duration END),
               end_reason = COALESCE(c.end_reason,
                   CASE WHEN s.rank = 3 AND s.status <> 'completed' THEN s.status END),
               disposition = COALESCE(c.disposition, CASE s.status
                   WHEN 'failed' THEN 'failed' WHEN 'canceled' THEN 'caller_hung_up' END),
               updated_at = now()
           FROM s WHERE c.twilio_call_sid = %(sid)s AND (c.status_rank < s.rank
               OR (s.status = 'in-progress' AND c.answered_at IS NULL AND s.stamped))""",
        values,
    )
    return StatusApplied(
        known=True,
        changed=cursor.rowcount == 1,
        in_history=bool(recorded and recorded["in_history"]),
    )
