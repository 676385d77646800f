"""Runs the projection continuously from a bus consumer. Embedded mode uses it with the same
batch processor as the Kafka consumer (validation, per-tenant redaction, dead letters), so the
two modes store the same rows. Offsets are committed only after the batch is applied, so a
crash in between re-delivers events that are then skipped as duplicates."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.bus import EventConsumer, ReceivedRecord

BatchApplier = Callable[[list[ReceivedRecord]], Awaitable[object]]


async def run_projector(
    consumer: EventConsumer,
    apply: BatchApplier,
    *,
    stop: asyncio.Event,
    poll_timeout_ms: int = 200,
) -> None:
    """Consume until ``stop`` is set and the consumer has nothing more to give."""
    await consumer.start()
    try:
        while True:
            records = await consumer.poll(timeout_ms=poll_timeout_ms)
            if records:
                await apply(records)
                await consumer.commit()
            elif stop.is_set():
                return
    finally:
        await consumer.stop()
