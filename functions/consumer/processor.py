"""One batch of records -> one database transaction. Shared by the Lambda, the long-running
consumer and replay, so all three treat duplicates, redaction and poison events the same way.

- Records that are not valid events become dead letters ("invalid").
- Events are redacted per tenant before anything is written (raw text never reaches a row).
- The batch is applied in one transaction; ids already present are skipped (duplicates).
- If the database refuses the batch for a data reason (a NUL byte, a constraint), the batch is
  re-applied event by event under savepoints; the refused events become dead letters
  ("rejected") and the others commit. Connection failures are raised for the caller to retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from functions.consumer.dead_letters import DeadLetter, DeadLetterSink
from shared.bus import ReceivedRecord
from shared.db import apply_events
from shared.events import Event
from shared.privacy import TenantPrivacy

log = logging.getLogger(__name__)

# Errors that say "this data cannot be stored" rather than "the database is not there".
POISON_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


@dataclass
class BatchOutcome:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: list[DeadLetter] = field(default_factory=list)

    def add(self, other: BatchOutcome) -> None:
        self.received += other.received
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.dead.extend(other.dead)


@dataclass
class PreparedBatch:
    records: list[ReceivedRecord]
    valid: list[tuple[ReceivedRecord, Event]] = field(default_factory=list)
    invalid: list[DeadLetter] = field(default_factory=list)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the offset to commit once this batch is applied."""
        out: dict[tuple[str, int], int] = {}
        for r in self.records:
            key = (r.topic, r.partition)
            out[key] = max(out.get(key, 0), r.offset + 1)
        return out


class BatchProcessor:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        privacy: TenantPrivacy | None = None,
        dead_letters: DeadLetterSink | None = None,
        lanes: int = 2,
    ) -> None:
        self.pool = pool
        self.privacy = privacy
        self.dead_letters = dead_letters
        # Partitions are split over this many concurrent transactions. A call lives in one
        # partition, so lanes never touch the same call rows and per-call order holds.
        self.lanes = lanes

    async def process(self, records: list[ReceivedRecord]) -> BatchOutcome:
        """Apply a batch; dead letters are acknowledged by the broker before this returns."""
        return await self.apply(await self.prepare(records))

    async def prepare(self, records: list[ReceivedRecord]) -> PreparedBatch:
        """Validate and redact (CPU work that can overlap the previous batch's database work)."""
        batch = PreparedBatch(records)
        for record in records:
            event, error = record.try_event()
            if event is None:
                batch.invalid.append(DeadLetter(record, error or "invalid event", "invalid"))
                continue
            if self.privacy is not None:
                event = await self.privacy.apply(event)
            batch.valid.append((record, event))
        return batch

    async def apply(self, batch: PreparedBatch) -> BatchOutcome:
        """The batch in one transaction per lane, then its dead letters."""
        lanes: dict[int, list[tuple[ReceivedRecord, Event]]] = defaultdict(list)
        for item in batch.valid:
            lanes[item[0].partition % self.lanes].append(item)
        results = await asyncio.gather(
            *(self._apply(lane) for lane in lanes.values()), return_exceptions=True
        )
        applied, rejected = 0, []
        for result in results:
            if isinstance(result, BaseException):
                raise result  # after every lane has finished; a retry skips what committed
            applied += result[0]
            rejected.extend(result[1])
        outcome = BatchOutcome(
            received=len(batch.records),
            applied=applied,
            duplicates=len(batch.valid) - applied - len(rejected),
            dead=batch.invalid + rejected,
        )
        if outcome.dead:
            await self._dead_letter(outcome.dead)
        return outcome

    async def _apply(
        self, valid: list[tuple[ReceivedRecord, Event]]
    ) -> tuple[int, list[DeadLetter]]:
        if not valid:
            return 0, []
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    return await apply_events(conn, [e for _, e in valid]), []
            except POISON_ERRORS as exc:
                log.warning(
                    "batch refused by the database (%s); isolating the poison event",
                    _first_line(exc),
                )
            return await self._apply_one_by_one(conn, valid)

    async def _apply_one_by_one(
        self, conn: psycopg.AsyncConnection[Any], valid: list[tuple[ReceivedRecord, Event]]
    ) -> tuple[int, list[DeadLetter]]:
        applied = 0
        rejected: list[DeadLetter] = []
        async with conn.transaction():
            for record, event in valid:
                try:
                    async with conn.transaction():  # a savepoint per event
                        applied += await apply_events(conn, [event])
                except POISON_ERRORS as exc:
                    reason = (
                        f"database rejected {event.type} {event.event_id} of call "
                        f"{event.call_id}: {_first_line(exc)}"
                    )
                    rejected.append(DeadLetter(record, reason, "rejected"))
        return applied, rejected

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            log.warning(
                "dead letter from %s[%d]@%d: %s",
                letter.record.topic,
                letter.record.partition,
                letter.record.offset,
                letter.reason,
            )
        if self.dead_letters is not None:
            await self.dead_letters.send(letters)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
