"""Runs the projection continuously from a bus consumer (embedded mode and the long-running
consumer share this loop). Offsets are committed only after the database commit, so a crash in
between re-delivers events that are then skipped as duplicates."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool

from shared.bus import EventConsumer, ReceivedRecord
from shared.db.projection import apply_events
from shared.events import Event

log = logging.getLogger(__name__)

InvalidHandler = Callable[[ReceivedRecord, str], Awaitable[None]]


async def _log_invalid(record: ReceivedRecord, reason: str) -> None:
    log.warning(
        "dropping invalid event at %s[%d]@%d: %s",
        record.topic,
        record.partition,
        record.offset,
        reason,
    )


async def project_batch(
    pool: AsyncConnectionPool,
    records: list[ReceivedRecord],
    on_invalid: InvalidHandler = _log_invalid,
) -> int:
    """Validate and apply one batch in a single transaction; return the number newly applied."""
    events: list[Event] = []
    for record in records:
        event, error = record.try_event()
        if event is None:
            await on_invalid(record, error or "invalid")
        else:
            events.append(event)
    if not events:
        return 0
    async with pool.connection() as conn, conn.transaction():
        return await apply_events(conn, events)


async def run_projector(
    consumer: EventConsumer,
    pool: AsyncConnectionPool,
    *,
    stop: asyncio.Event,
    on_invalid: InvalidHandler = _log_invalid,
    poll_timeout_ms: int = 200,
) -> None:
    """Consume until ``stop`` is set and the consumer has nothing more to give."""
    await consumer.start()
    try:
        while True:
            records = await consumer.poll(timeout_ms=poll_timeout_ms)
            if records:
                await project_batch(pool, records, on_invalid)
                await consumer.commit()
            elif stop.is_set():
                return
    finally:
        await consumer.stop()
