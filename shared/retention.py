"""Deleting calls: one call, every call of a caller's number, and what a tenant's retention
settings say has expired. One mechanism for all three, so a call deleted any way loses the same
things:

- the ``calls`` row and its turns, intents and latencies (their rollups go down with them);
- its raw ``call_events``, Twilio status callbacks and webhook deliveries (with their log);
- its recording (the local file or the S3 object);

and leaves a tombstone in ``deleted_calls`` (the call id only) so a replayed or late event cannot
bring the call back. Every deletion is written to ``tenant_audit_log`` in the same transaction.

Tenant settings (``tenants.settings`` jsonb) that drive :func:`purge_expired`:

- ``call_retention_days``: calls that started longer ago are deleted (absent or null: kept);
- ``recording_retention_days``: recordings of calls that started longer ago are deleted and the
  call keeps ``recording_deleted_at`` (default 30, as the admin API's settings say).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from shared.db.pool import connect
from shared.recordings import delete_recording

log = logging.getLogger(__name__)

# The actor recorded in the audit log for deletions the retention purge makes.
RETENTION_ACTOR = "retention"
DEFAULT_RECORDING_RETENTION_DAYS = 30
BATCH = 500


@dataclass
class Deleted:
    """The calls :func:`delete_calls` deleted and the recordings they had."""

    call_ids: list[str]
    recordings: list[str]


@dataclass
class PurgeReport:
    """What one :func:`purge_expired` run deleted, per tenant."""

    calls: dict[str, int] = field(default_factory=dict)
    recordings: dict[str, int] = field(default_factory=dict)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def total_recordings(self) -> int:
        return sum(self.recordings.values())


async def delete_calls(
    conn: AsyncConnection[Any],
    tenant_id: str,
    call_ids: Sequence[str],
    *,
    reason: str,
) -> Deleted:
    """Delete these calls of ``tenant_id`` (ids of other tenants are ignored) inside the caller's
    transaction (``conn`` with dict rows, as ``shared.db.pool`` makes them). The recordings are
    only listed: remove them with :func:`remove_recordings` once the transaction has committed,
    so a failed transaction never leaves a row pointing at a recording already gone."""
    if not call_ids:
        return Deleted([], [])
    cur = await conn.execute(
        "SELECT call_id, twilio_call_sid, recording_url FROM calls "
        "WHERE tenant_id = %s AND call_id = ANY(%s) FOR UPDATE",
        (tenant_id, list(call_ids)),
    )
    rows = await cur.fetchall()
    ids = [r["call_id"] for r in rows]
    if not ids:
        return Deleted([], [])
    sids = [r["twilio_call_sid"] for r in rows if r["twilio_call_sid"]]
    # call_latency first: its rollup trigger reads the calls row, gone once the cascade runs.
    await conn.execute("DELETE FROM call_latency WHERE call_id = ANY(%s)", (ids,))
    await conn.execute("DELETE FROM call_events WHERE call_id = ANY(%s)", (ids,))
    # Webhook payloads carry the call's numbers, summary and slots; their attempts cascade.
    await conn.execute("DELETE FROM webhook_deliveries WHERE call_id = ANY(%s)", (ids,))
    if sids:
        await conn.execute("DELETE FROM call_status_events WHERE call_sid = ANY(%s)", (sids,))
    await conn.execute("DELETE FROM calls WHERE call_id = ANY(%s)", (ids,))
    await conn.execute(
        "INSERT INTO deleted_calls (call_id, tenant_id, reason) "
        "SELECT unnest(%s::text[]), %s, %s ON CONFLICT (call_id) DO NOTHING",
        (ids, tenant_id, reason),
    )
    return Deleted(ids, [r["recording_url"] for r in rows if r["recording_url"]])


def remove_recordings(stored: Sequence[str], root: Path | None) -> int:
    """Remove recordings (after the transaction that deleted their calls); return how many went.
    One that cannot be removed is logged and left: the purge's next run does not see it again,
    so it is reported rather than retried forever."""
    removed = 0
    for location in stored:
        try:
            removed += delete_recording(location, root)
        except Exception as exc:
            log.error("cannot remove recording %s: %s", location, exc)
    return removed


async def audit(
    conn: AsyncConnection[Any], tenant_id: str, key_id: str, action: str, detail: dict[str, Any]
) -> None:
    """One entry in the tenant's audit log (inside the caller's transaction)."""
    await conn.execute(
        "INSERT INTO tenant_audit_log (tenant_id, key_id, action, detail) VALUES (%s, %s, %s, %s)",
        (tenant_id, key_id, action, Jsonb(detail)),
    )


async def calls_of_number(conn: AsyncConnection[Any], tenant_id: str, number: str) -> list[str]:
    """The ids of every call of ``tenant_id`` from or to ``number``."""
    cur = await conn.execute(
        "SELECT call_id FROM calls WHERE tenant_id = %s AND from_number = %s "
        "UNION SELECT call_id FROM calls WHERE tenant_id = %s AND to_number = %s",
        (tenant_id, number, tenant_id, number),
    )
    return [r["call_id"] for r in await cur.fetchall()]


async def purge_expired(
    database_url: str,
    *,
    recording_root: Path | None = None,
    now: datetime | None = None,
    tenant_id: str | None = None,
) -> PurgeReport:
    """Delete what each tenant's retention settings say has expired; return what went.

    Safe to run at any time and from several schedulers at once (each batch locks its rows; a
    second run finds nothing left to do). Work is done in batches of a few hundred calls, one
    transaction each, so a large backlog never holds long locks.

    ``database_url``: the PostgreSQL URL (``Settings.database_url``).
    ``recording_root``: where local recordings lie
    (``shared.recordings.local_root(settings.recording_store, settings.data_dir)``); None when
    they are in S3 (S3 objects are deleted with the function's AWS credentials).
    ``now``: the reference instant (tests); default: the current time.
    ``tenant_id``: purge this tenant only; default: every tenant.

    From synchronous code (a Celery task): ``asyncio.run(purge_expired(url, ...))``.
    """
    at = now or datetime.now(UTC)
    report = PurgeReport()
    conn: AsyncConnection[Any] = await connect(database_url)
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT tenant_id, (settings->>'call_retention_days')::int AS call_days, "
                "COALESCE((settings->>'recording_retention_days')::int, %s) AS recording_days "
                "FROM tenants WHERE %s::text IS NULL OR tenant_id = %s ORDER BY tenant_id",
                (DEFAULT_RECORDING_RETENTION_DAYS, tenant_id, tenant_id),
            )
            tenants = await cur.fetchall()
        for tenant in tenants:
            tid = tenant["tenant_id"]
            if tenant["call_days"] is not None:
                count = await _purge_calls(conn, tid, at, int(tenant["call_days"]), recording_root)
                if count:
                    report.calls[tid] = count
            count = await _purge_recordings(
                conn, tid, at, int(tenant["recording_days"]), recording_root
            )
            if count:
                report.recordings[tid] = count
    finally:
        await conn.close()
    if report.total_calls or report.total_recordings:
        log.info(
            "retention purge: %d calls, %d recordings deleted",
            report.total_calls,
            report.total_recordings,
        )
    return report


async def _purge_calls(
    conn: AsyncConnection[Any], tenant_id: str, now: datetime, days: int, root: Path | None
) -> int:
    total = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT call_id FROM calls WHERE tenant_id = %s "
                "AND started_at < %s - make_interval(days => %s) "
                "ORDER BY started_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (tenant_id, now, days, BATCH),
            )
            ids = [r["call_id"] for r in await cur.fetchall()]
            if not ids:
                return total
            deleted = await delete_calls(conn, tenant_id, ids, reason="retention")
            await audit(
                conn,
                tenant_id,
                RETENTION_ACTOR,
                "calls_purged",
                {"calls": len(deleted.call_ids), "retention_days": days},
            )
        remove_recordings(deleted.recordings, root)
        total += len(deleted.call_ids)


async def _purge_recordings(
    conn: AsyncConnection[Any], tenant_id: str, now: datetime, days: int, root: Path | None
) -> int:
    total = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute(
                """WITH old AS (
                       SELECT call_id, recording_url FROM calls
                       WHERE tenant_id = %s AND recording_url IS NOT NULL
                         AND started_at < %s - make_interval(days => %s)
                       ORDER BY started_at LIMIT %s FOR UPDATE SKIP LOCKED)
                   UPDATE calls c SET recording_url = NULL, recording_deleted_at = %s,
                       updated_at = now()
                   FROM old WHERE c.call_id = old.call_id
                   RETURNING c.call_id, old.recording_url AS stored""",
                (tenant_id, now, days, BATCH, now),
            )
            rows = await cur.fetchall()
            if not rows:
                return total
            await audit(
                conn,
                tenant_id,
                RETENTION_ACTOR,
                "recordings_purged",
                {"recordings": len(rows), "retention_days": days},
            )
        remove_recordings([r["stored"] for r in rows], root)
        total += len(rows)
