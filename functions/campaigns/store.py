"""A campaign's rows: dispatching due contacts, claiming a dial, settling an attempt by its
outcome, and the progress counts. Used by the API routes, the Twilio webhooks and the workers.

The exactly-once rule: a dial task may run twice (a worker killed mid-task hands the message back;
Celery retries). Each attempt is a row, unique per (contact, attempt number), and a worker dials
only after it moved that row from ``queued`` to ``dialing`` in a committed statement; a second run
finds it ``dialing`` and places nothing. Whatever happens to the call from then on is learned from
Twilio's callbacks, which name the attempt in their URL, so even a call whose SID the killed worker
never stored is recognised.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from functions.campaigns import schedule
from functions.common.db import fetch_all, fetch_one
from functions.webhooks import outcomes

OPEN_ATTEMPT = ("queued", "dialing", "placed")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Dispatched:
    attempt_id: str
    countdown_s: float


async def is_dnc(conn: AsyncConnection[Any], tenant_id: str, number: str) -> bool:
    row = await fetch_one(
        conn, "SELECT 1 FROM dnc_numbers WHERE tenant_id = %s AND number = %s", (tenant_id, number)
    )
    return row is not None


async def add_dnc(
    conn: AsyncConnection[Any], tenant_id: str, numbers: list[str], source: str
) -> int:
    """Add numbers to the tenant's do-not-call list; contacts not yet finished are skipped."""
    added = 0
    for number in numbers:
        cursor = await conn.execute(
            "INSERT INTO dnc_numbers (tenant_id, number, source) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (tenant_id, number, source),
        )
        added += cursor.rowcount
    return added


async def dispatch(
    conn: AsyncConnection[Any],
    campaign_id: str,
    *,
    now: datetime,
    tick_s: float,
    tenant_default_max: int,
) -> list[Dispatched]:
    """Queue the attempts a running campaign may start now. One dispatcher per campaign at a
    time (a transaction-scoped advisory lock), so concurrency limits are never overshot by two
    rounds counting the same free slots. Returns the attempts to send dial tasks for (after the
    caller commits), spaced by the campaign's calls-per-second."""
    async with conn.transaction():
        locked = await fetch_one(
            conn, "SELECT pg_try_advisory_xact_lock(hashtext(%s)) AS ok", (campaign_id,)
        )
        if not locked or not locked["ok"]:
            return []
        campaign = await fetch_one(
            conn,
            """SELECT c.*, COALESCE(l.max_concurrent_calls, %s) AS tenant_max
               FROM campaigns c LEFT JOIN tenant_call_limits l ON l.tenant_id = c.tenant_id
               WHERE c.campaign_id = %s""",
            (tenant_default_max, campaign_id),
        )
        if campaign is None or campaign["status"] != "running":
            return []
        counts = await fetch_one(
            conn,
            """SELECT count(*) FILTER (WHERE campaign_id = %s) AS campaign,
                      count(*) AS tenant
               FROM campaign_attempts WHERE tenant_id = %s AND state <> 'finished'""",
            (campaign_id, campaign["tenant_id"]),
        )
        assert counts is not None
        slots = min(
            campaign["max_concurrency"] - counts["campaign"],
            campaign["tenant_max"] - counts["tenant"],
            max(1, math.floor(campaign["calls_per_second"] * tick_s)),
        )
        if slots <= 0:
            return []
        window = schedule.Window(
            campaign["window_start"], campaign["window_end"], tuple(campaign["window_days"])
        )
        due = await fetch_all(
            conn,
            """SELECT k.contact_id, k.number, k.timezone, k.attempts,
                      d.number IS NOT NULL AS dnc,
                      (SELECT COALESCE(max(a.attempt_no), 0) FROM campaign_attempts a
                       WHERE a.contact_id = k.contact_id) AS last_attempt_no
               FROM campaign_contacts k
               LEFT JOIN dnc_numbers d ON d.tenant_id = k.tenant_id AND d.number = k.number
               WHERE k.campaign_id = %s AND k.state IN ('pending', 'waiting_retry')
                 AND (k.next_attempt_at IS NULL OR k.next_attempt_at <= %s)
               ORDER BY k.next_attempt_at NULLS FIRST, k.contact_id
               LIMIT %s FOR UPDATE OF k SKIP LOCKED""",
            (campaign_id, now, slots * 4 + 20),
        )
        chosen: list[Dispatched] = []
        for contact in due:
            if contact["dnc"]:
                await _skip_dnc(conn, contact["contact_id"])
                continue
            opens = window.opens(now, contact["timezone"])
            if opens > now:
                await conn.execute(
                    "UPDATE campaign_contacts SET next_attempt_at = %s WHERE contact_id = %s",
                    (opens, contact["contact_id"]),
                )
                continue
            if len(chosen) >= slots:
                continue
            attempt_id = new_id("att")
            await conn.execute(
                """INSERT INTO campaign_attempts
                       (attempt_id, campaign_id, contact_id, tenant_id, attempt_no)
                   VALUES (%s, %s, %s, %s, %s)""",
                (
                    attempt_id,
                    campaign_id,
                    contact["contact_id"],
                    campaign["tenant_id"],
                    # Numbered after every earlier row: an attempt that did not count (never
                    # dialled, or lost) keeps its number, and ``attempts`` does not include it.
                    contact["last_attempt_no"] + 1,
                ),
            )
            await conn.execute(
                "UPDATE campaign_contacts SET state = 'queued', attempts = attempts + 1, "
                "next_attempt_at = NULL WHERE contact_id = %s",
                (contact["contact_id"],),
            )
            chosen.append(Dispatched(attempt_id, len(chosen) / campaign["calls_per_second"]))
        return chosen


async def _skip_dnc(conn: AsyncConnection[Any], contact_id: str) -> None:
    await conn.execute(
        "UPDATE campaign_contacts SET state = 'skipped', last_outcome = %s, "
        "next_attempt_at = NULL WHERE contact_id = %s",
        (schedule.DNC, contact_id),
    )


@dataclass(frozen=True)
class Claim:
    attempt_id: str
    tenant_id: str
    agent_id: str
    campaign_id: str
    to_number: str
    from_number: str


async def claim(conn: AsyncConnection[Any], attempt_id: str, *, now: datetime) -> Claim | None:
    """Take the attempt for dialing, or None: another run already did (redelivered task), the
    campaign stopped (the contact goes back to wait), or the number is on the DNC list now."""
    async with conn.transaction():
        row = await fetch_one(
            conn,
            """SELECT a.state, a.contact_id, a.tenant_id, k.number, c.agent_id, c.campaign_id,
                      c.from_number, c.status AS campaign_status,
                      EXISTS (SELECT 1 FROM dnc_numbers d
                              WHERE d.tenant_id = a.tenant_id AND d.number = k.number) AS dnc
               FROM campaign_attempts a
               JOIN campaign_contacts k ON k.contact_id = a.contact_id
               JOIN campaigns c ON c.campaign_id = a.campaign_id
               WHERE a.attempt_id = %s FOR UPDATE OF a, k""",
            (attempt_id,),
        )
        if row is None or row["state"] != "queued":
            return None
        if row["dnc"] or row["campaign_status"] != "running":
            outcome = schedule.DNC if row["dnc"] else schedule.CANCELED
            await conn.execute(
                "UPDATE campaign_attempts SET state = 'finished', outcome = %s, finished_at = %s "
                "WHERE attempt_id = %s",
                (outcome, now, attempt_id),
            )
            if row["dnc"]:
                await _skip_dnc(conn, row["contact_id"])
            else:
                # Not dialled: the attempt does not count; a canceled campaign ends the contact.
                back = "canceled" if row["campaign_status"] == "canceled" else "pending"
                await conn.execute(
                    "UPDATE campaign_contacts SET state = %s, attempts = attempts - 1 "
                    "WHERE contact_id = %s",
                    (back, row["contact_id"]),
                )
            return None
        await conn.execute(
            "UPDATE campaign_attempts SET state = 'dialing', dial_started_at = %s "
            "WHERE attempt_id = %s",
            (now, attempt_id),
        )
        await conn.execute(
            "UPDATE campaign_contacts SET state = 'in_call' WHERE contact_id = %s",
            (row["contact_id"],),
        )
    return Claim(
        attempt_id,
        row["tenant_id"],
        row["agent_id"],
        row["campaign_id"],
        row["number"],
        row["from_number"],
    )


async def placed(conn: AsyncConnection[Any], attempt_id: str, call_sid: str) -> None:
    """Twilio took the call. (A callback may have linked the SID already: same value.)"""
    await conn.execute(
        "UPDATE campaign_attempts SET call_sid = %s, "
        "state = CASE WHEN state = 'dialing' THEN 'placed' ELSE state END "
        "WHERE attempt_id = %s AND (call_sid IS NULL OR call_sid = %s)",
        (call_sid, attempt_id, call_sid),
    )


async def link_call(
    conn: AsyncConnection[Any], attempt_id: str, call_sid: str
) -> dict[str, Any] | None:
    """A callback for ``attempt_id`` names ``call_sid``: link them if the attempt had no SID yet
    (its worker died before storing it). Returns the attempt with its contact and campaign, or
    None if the attempt is unknown or belongs to another call."""
    return await fetch_one(
        conn,
        """WITH linked AS (
               UPDATE campaign_attempts SET call_sid = %(sid)s,
                   state = CASE WHEN state = 'dialing' THEN 'placed' ELSE state END
               WHERE attempt_id = %(attempt)s AND (call_sid IS NULL OR call_sid = %(sid)s)
               RETURNING attempt_id, contact_id, campaign_id, tenant_id)
           SELECT l.*, k.number, k.variables, c.agent_id, c.from_number
           FROM linked l JOIN campaign_contacts k ON k.contact_id = l.contact_id
           JOIN campaigns c ON c.campaign_id = l.campaign_id""",
        {"sid": call_sid, "attempt": attempt_id},
    )


async def variables_for_call(conn: AsyncConnection[Any], call_sid: str) -> dict[str, str]:
    """The contact's variables for the agent, if ``call_sid`` is a campaign call."""
    row = await fetch_one(
        conn,
        """SELECT k.variables FROM campaign_attempts a
           JOIN campaign_contacts k ON k.contact_id = a.contact_id WHERE a.call_sid = %s""",
        (call_sid,),
    )
    return {str(k): str(v) for k, v in (row["variables"] if row else {}).items()}


async def answered_by(conn: AsyncConnection[Any], call_sid: str, answer: str) -> bool:
    """Record Twilio's answering-machine verdict; True if the call is a campaign attempt."""
    cursor = await conn.execute(
        "UPDATE campaign_attempts SET answered_by = %s WHERE call_sid = %s", (answer, call_sid)
    )
    return cursor.rowcount > 0


async def settle(
    conn: AsyncConnection[Any],
    *,
    call_sid: str | None,
    attempt_id: str | None,
    outcome: str | None = None,
    status: str | None = None,
    error: str | None = None,
    media_node_verdict: str | None = None,
    now: datetime,
) -> str | None:
    """Finish an open attempt (by SID or id) and move its contact on: retry per the policy, or
    done with the call's disposition. Returns the outcome, or None if nothing was open.
    ``media_node_verdict``: the media node claimed the call's machine verdict (it, not Twilio's
    AMD, decided the call reached a machine); it is stored as the attempt's ``answered_by``."""
    async with conn.transaction():
        row = await fetch_one(
            conn,
            """SELECT a.attempt_id, a.contact_id, a.answered_by, k.attempts, c.retry_policy,
                      c.status AS campaign_status, calls.disposition, a.campaign_id,
                      c.tenant_id, a.call_sid, calls.call_id,
                      (SELECT count(*) FROM campaign_attempts p
                       WHERE p.contact_id = a.contact_id AND p.outcome = %s) AS lost_before
               FROM campaign_attempts a
               JOIN campaign_contacts k ON k.contact_id = a.contact_id
               JOIN campaigns c ON c.campaign_id = a.campaign_id
               LEFT JOIN calls ON calls.twilio_call_sid = a.call_sid
               WHERE (a.call_sid = %s OR a.attempt_id = %s) AND a.state <> 'finished'
               FOR UPDATE OF a, k""",
            (schedule.LOST, call_sid, attempt_id),
        )
        if row is None:
            return None
        answered = media_node_verdict or row["answered_by"]
        if outcome is None:
            outcome = schedule.outcome_of(status or "failed", answered)
        await conn.execute(
            "UPDATE campaign_attempts SET state = 'finished', outcome = %s, error = %s, "
            "finished_at = %s, answered_by = %s WHERE attempt_id = %s",
            (outcome, error, now, answered, row["attempt_id"]),
        )
        again = None
        if row["campaign_status"] != "canceled":
            if outcome == schedule.LOST and row["lost_before"] < schedule.LOST_REDIALS:
                # No word of the call within the stale period: Twilio never had it, so the
                # callee was not rung. The attempt does not count, and the contact is dialled
                # again now (a worker that died with a claimed dial loses nothing).
                again = now
                await conn.execute(
                    "UPDATE campaign_contacts SET attempts = attempts - 1 WHERE contact_id = %s",
                    (row["contact_id"],),
                )
            else:
                again = schedule.next_attempt(row["retry_policy"], outcome, row["attempts"], now)
        disposition = row["disposition"]
        if disposition is None and outcome == schedule.VOICEMAIL:
            disposition = "voicemail"
        if again is not None:
            await conn.execute(
                "UPDATE campaign_contacts SET state = 'waiting_retry', next_attempt_at = %s, "
                "last_outcome = %s, disposition = %s WHERE contact_id = %s",
                (again, outcome, disposition, row["contact_id"]),
            )
        else:
            final = "canceled" if row["campaign_status"] == "canceled" else "done"
            await conn.execute(
                "UPDATE campaign_contacts SET state = %s, next_attempt_at = NULL, "
                "last_outcome = %s, disposition = %s WHERE contact_id = %s",
                (final, outcome, disposition, row["contact_id"]),
            )
        finished = outcomes.happened_now(
            row["tenant_id"],
            outcomes.CAMPAIGN_ATTEMPT_FINISHED,
            {
                "campaign_id": row["campaign_id"],
                "contact_id": row["contact_id"],
                "attempt_id": row["attempt_id"],
                "call_id": row["call_id"],
                "twilio_call_sid": row["call_sid"],
                "outcome": outcome,
                "disposition": disposition,
                "error": error,
                "retry_at": again.isoformat() if again is not None else None,
            },
            source_id=f"attempt:{row['attempt_id']}",
            call_id=row["call_id"],
        )
        await outcomes.record(conn, [finished])
    return outcome


async def lost_attempts(conn: AsyncConnection[Any], *, older_than: datetime) -> list[str]:
    """Claimed attempts with no word of their call since ``older_than``."""
    rows = await fetch_all(
        conn,
        "SELECT attempt_id FROM campaign_attempts WHERE state = 'dialing' AND call_sid IS NULL "
        "AND dial_started_at < %s",
        (older_than,),
    )
    return [r["attempt_id"] for r in rows]


async def running_campaigns(conn: AsyncConnection[Any]) -> list[str]:
    rows = await fetch_all(conn, "SELECT campaign_id FROM campaigns WHERE status = 'running'")
    return [r["campaign_id"] for r in rows]


async def complete_finished(conn: AsyncConnection[Any], *, now: datetime) -> int:
    """Running campaigns whose every contact is over become ``completed``."""
    async with conn.transaction():
        done = await fetch_all(
            conn,
            """UPDATE campaigns c SET status = 'completed', finished_at = %s, updated_at = %s
               WHERE c.status = 'running' AND NOT EXISTS (
                   SELECT 1 FROM campaign_contacts k WHERE k.campaign_id = c.campaign_id
                     AND k.state NOT IN ('done', 'skipped', 'canceled'))
               RETURNING c.campaign_id, c.tenant_id, c.name""",
            (now, now),
        )
        await outcomes.record(
            conn,
            [
                outcomes.happened_now(
                    row["tenant_id"],
                    outcomes.CAMPAIGN_COMPLETED,
                    {"campaign_id": row["campaign_id"], "name": row["name"], "status": "completed"},
                    source_id=f"campaign:{row['campaign_id']}:completed",
                )
                for row in done
            ],
        )
    return len(done)


async def contacts_with_attempts(
    conn: AsyncConnection[Any],
    campaign_id: str,
    *,
    states: Sequence[str] | None,
    outcomes: Sequence[str] | None,
    after: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A page of the campaign's contacts in contact id order, each with its attempts."""
    return await fetch_all(
        conn,
        """SELECT k.contact_id, k.number, k.timezone, k.state, k.next_attempt_at,
                  k.last_outcome, k.disposition, k.variables,
                  COALESCE((SELECT jsonb_agg(jsonb_build_object(
                      'attempt_no', a.attempt_no, 'state', a.state, 'outcome', a.outcome,
                      'error', a.error, 'call_sid', a.call_sid, 'answered_by', a.answered_by,
                      'queued_at', a.queued_at, 'finished_at', a.finished_at)
                      ORDER BY a.attempt_no)
                   FROM campaign_attempts a WHERE a.contact_id = k.contact_id), '[]') AS attempts
           FROM campaign_contacts k
           WHERE k.campaign_id = %(campaign)s
             AND (%(states)s::text[] IS NULL OR k.state = ANY(%(states)s))
             AND (%(outcomes)s::text[] IS NULL OR k.last_outcome = ANY(%(outcomes)s))
             AND (%(after)s::text IS NULL OR k.contact_id > %(after)s)
           ORDER BY k.contact_id LIMIT %(limit)s""",
        {
            "campaign": campaign_id,
            "states": states,
            "outcomes": outcomes,
            "after": after,
            "limit": limit,
        },
    )


async def progress(conn: AsyncConnection[Any], campaign_id: str) -> dict[str, Any]:
    """Counts of the campaign's contacts by state, outcome and disposition, and attempts."""
    by_state = await fetch_all(
        conn,
        "SELECT state, count(*) AS n FROM campaign_contacts WHERE campaign_id = %s GROUP BY state",
        (campaign_id,),
    )
    by_outcome = await fetch_all(
        conn,
        "SELECT last_outcome AS o, count(*) AS n FROM campaign_contacts WHERE campaign_id = %s "
        "AND last_outcome IS NOT NULL AND state IN ('done', 'skipped') GROUP BY last_outcome",
        (campaign_id,),
    )
    by_disposition = await fetch_all(
        conn,
        "SELECT disposition AS d, count(*) AS n FROM campaign_contacts WHERE campaign_id = %s "
        "AND disposition IS NOT NULL AND state = 'done' GROUP BY disposition",
        (campaign_id,),
    )
    attempts = await fetch_all(
        conn,
        "SELECT COALESCE(outcome, state) AS o, count(*) AS n FROM campaign_attempts "
        "WHERE campaign_id = %s GROUP BY 1",
        (campaign_id,),
    )
    failures = await fetch_all(
        conn,
        "SELECT COALESCE(error, outcome) AS e, count(*) AS n FROM campaign_attempts "
        "WHERE campaign_id = %s AND outcome IN ('failed', 'lost') "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20",
        (campaign_id,),
    )
    return {
        "failures": {r["e"]: r["n"] for r in failures},
        "contacts": {r["state"]: r["n"] for r in by_state},
        "outcomes": {r["o"]: r["n"] for r in by_outcome},
        "dispositions": {r["d"]: r["n"] for r in by_disposition},
        "attempts": {r["o"]: r["n"] for r in attempts},
    }


def as_json(value: dict[str, Any]) -> Jsonb:
    return Jsonb(value)
