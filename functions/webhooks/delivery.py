"""POSTing deliveries: the sweep leases what is due, a task per delivery POSTs it.

One mechanism does first attempts, retries and recovery: a delivery row is *due* when it is
pending and its ``next_attempt_at`` has passed. The beat's sweep leases due rows (a random token,
valid ``webhook_lease_s``) and enqueues one task per row; the task POSTs only if the row still
carries its token, then records the attempt and either marks the row delivered, schedules the
next attempt (exponential backoff with jitter) or, after ``webhook_max_attempts``, moves it to
the dead-letter list. A task lost with its worker, or never enqueued because Redis was away,
leaves a lease that expires, and the next sweep leases the row again: a delivery can be POSTed
more than once (at least once), always with the same ``Parley-Webhook-Id``, which is the
receiver's idempotency key.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from psycopg import AsyncConnection

from functions.common.config import FunctionSettings
from functions.webhooks import signing

log = logging.getLogger("parley.webhooks")

USER_AGENT = "Parley-Webhooks/1"
ERROR_EXCERPT = 300


def describe_failure(exc: httpx.HTTPError) -> str:
    """The delivery log's words for an attempt that got no answer.

    httpx often carries no message (a reset connection is a bare ``ReadError``), so the class
    names what happened and a plain sentence says it for whoever reads the log.
    """
    if isinstance(exc, httpx.TimeoutException):
        plain = "no answer within the delivery timeout"
    elif isinstance(exc, httpx.ConnectError):
        plain = "could not connect to the receiver"
    elif isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError):
        plain = "the receiver closed the connection before answering"
    else:
        plain = "the request failed"
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {plain}" + (f" ({detail})" if detail else "")


@dataclass(frozen=True)
class Leased:
    delivery_id: str
    token: str


def backoff_s(settings: FunctionSettings, attempts: int, *, jitter: float | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: base x factor^(attempts-1), capped, +-20%."""
    raw = settings.webhook_retry_base_s * settings.webhook_retry_factor ** max(attempts - 1, 0)
    spread = random.uniform(-0.2, 0.2) if jitter is None else jitter
    return min(raw, settings.webhook_retry_max_s) * (1 + spread)


async def lease_due(
    conn: AsyncConnection[Any], settings: FunctionSettings, *, limit: int = 500
) -> list[Leased]:
    """Lease up to ``limit`` due deliveries (committed before the tasks are sent)."""
    async with conn.transaction():
        cur = await conn.execute(
            """WITH due AS (
                   SELECT delivery_id FROM webhook_deliveries
                   WHERE status = 'pending' AND next_attempt_at <= now()
                     AND (leased_until IS NULL OR leased_until < now())
                   ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)
               UPDATE webhook_deliveries d
               SET lease_token = md5(random()::text || d.delivery_id),
                   leased_until = now() + make_interval(secs => %s)
               FROM due WHERE d.delivery_id = due.delivery_id
               RETURNING d.delivery_id, d.lease_token""",
            (limit, settings.webhook_lease_s),
        )
        rows = await cur.fetchall()
    return [Leased(r["delivery_id"], r["lease_token"]) for r in rows]


async def deliver(conn: AsyncConnection[Any], settings: FunctionSettings, leased: Leased) -> str:
    """POST one leased delivery once; returns what became of it."""
    cur = await conn.execute(
        """SELECT d.payload, d.attempts, s.url, s.secret, s.active, s.deleted_at,
                  CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END
                      AS previous_secret
           FROM webhook_deliveries d JOIN webhook_subscriptions s USING (subscription_id)
           WHERE d.delivery_id = %s AND d.lease_token = %s AND d.status = 'pending'""",
        (leased.delivery_id, leased.token),
    )
    row = await cur.fetchone()
    await conn.commit()
    if row is None:
        return "stale"  # delivered, redelivered or re-leased by another task meanwhile
    if row["deleted_at"] is not None or not row["active"]:
        await _finish(conn, leased, status="canceled", error="the subscription is not active")
        return "canceled"
    body = json.dumps(row["payload"], separators=(",", ":"), sort_keys=True).encode()
    attempt = await _next_attempt_number(conn, leased.delivery_id)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.ID_HEADER: leased.delivery_id,
        signing.TIMESTAMP_HEADER: str(timestamp),
        signing.SIGNATURE_HEADER: signing.signatures(
            [row["secret"], *([row["previous_secret"]] if row["previous_secret"] else [])],
            timestamp,
            body,
        ),
        signing.ATTEMPT_HEADER: str(attempt),
    }
    started = datetime.now(UTC)
    began = time.monotonic()
    status_code: int | None = None
    error: str | None = None
    try:
        # No redirects: a receiver that moved says so with a failed attempt, and a redirect
        # never takes a signed payload somewhere the subscription did not name.
        async with httpx.AsyncClient(
            timeout=settings.webhook_timeout_s, follow_redirects=False
        ) as client:
            reply = await client.post(row["url"], content=body, headers=headers)
        status_code = reply.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}: {reply.text[:ERROR_EXCERPT]}"
    except httpx.HTTPError as exc:
        error = describe_failure(exc)[:ERROR_EXCERPT]
    duration_ms = int((time.monotonic() - began) * 1000)
    await conn.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, "
        "status_code, error) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (leased.delivery_id, attempt, started, duration_ms, status_code, error),
    )
    if error is None:
        await _finish(conn, leased, status="delivered", status_code=status_code)
        return "delivered"
    attempts = row["attempts"] + 1
    if attempts >= settings.webhook_max_attempts:
        await _finish(
            conn, leased, status="dead", status_code=status_code, error=error, attempts=attempts
        )
        log.warning("webhook delivery %s is dead after %d attempts", leased.delivery_id, attempts)
        return "dead"
    await _finish(
        conn,
        leased,
        status="pending",
        status_code=status_code,
        error=error,
        attempts=attempts,
        retry_at=datetime.now(UTC) + timedelta(seconds=backoff_s(settings, attempts)),
    )
    return "retrying"


async def _next_attempt_number(conn: AsyncConnection[Any], delivery_id: str) -> int:
    cur = await conn.execute(
        "SELECT COALESCE(max(attempt), 0) + 1 AS n FROM webhook_attempts WHERE delivery_id = %s",
        (delivery_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def _finish(
    conn: AsyncConnection[Any],
    leased: Leased,
    *,
    status: str,
    status_code: int | None = None,
    error: str | None = None,
    attempts: int | None = None,
    retry_at: datetime | None = None,
) -> None:
    """The attempt's result, written only while the lease is still this task's."""
    await conn.execute(
        """UPDATE webhook_deliveries SET status = %s, last_status = COALESCE(%s, last_status),
               last_error = %s, attempts = COALESCE(%s, attempts),
               next_attempt_at = COALESCE(%s, next_attempt_at),
               delivered_at = CASE WHEN %s = 'delivered' THEN now() ELSE delivered_at END,
               lease_token = NULL, leased_until = NULL
           WHERE delivery_id = %s AND lease_token = %s""",
        (
            status,
            status_code,
            error,
            attempts,
            retry_at,
            status,
            leased.delivery_id,
            leased.token,
        ),
    )
    await conn.commit()
