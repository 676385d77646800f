"""One batch of records -> one database transaction. Shared by the Lambda, the long-running
consumer and replay, so all three treat duplicates, redaction and poison events the same way.

- Records that are not valid events become dead letters ("invalid").
- Events are redacted per tenant before anything is written (raw text never reaches a row).
- The batch is applied in one transaction; ids already present are skipped (duplicates). The
  webhook deliveries of the new events are recorded in that transaction too.
- Database errors are classified by SQLSTATE (:func:`classify`), never by the exception's class
  (psycopg raises a program limit such as "string is too long for tsvector" as an
  OperationalError). When the database is unavailable the error is raised for the caller to
  retry the batch. A transient conflict (serialization, deadlock) is retried a few times. Anything
  else means some record cannot be stored: the batch is re-applied event by event under
  savepoints, the refused events become dead letters ("rejected", with the SQLSTATE and message)
  and the others commit. A single record delays only itself.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from functions.analysis.store import request_for_ended
from functions.consumer.dead_letters import DeadLetter, DeadLetterSink
from functions.webhooks.outcomes import record_for_events
from shared import tracing
from shared.bus import ReceivedRecord
from shared.db import apply_new_events
from shared.events import Event
from shared.privacy import TenantPrivacy

log = logging.getLogger(__name__)


class Fault(enum.Enum):
    UNAVAILABLE = "unavailable"  # the database is not there (yet): retry the batch, lose nothing
    TRANSIENT = "transient"  # a conflict with another transaction: retry a few times
    REJECTED = "rejected"  # this data cannot be stored: set the record aside


# SQLSTATE classes and codes that say "the server is not there" rather than "not this data":
# 08 connection exceptions, 53 insufficient resources (53300 too many connections, out of
# memory, disk full), 57P01-03 admin/crash shutdown and "cannot connect now".
_UNAVAILABLE_CLASSES = ("08", "53")
_UNAVAILABLE_CODES = ("57P01", "57P02", "57P03")
# 40 transaction rollback: serialization failure, deadlock.
_TRANSIENT_CLASSES = ("40",)
# Everything else with a SQLSTATE is the data's fault, notably 22 data exceptions, 23 integrity
# violations, 42 syntax/undefined objects, 54 program limits, 57014 statement timeout.

# What the database layer raises; anything else is a bug and is not swallowed.
DATABASE_ERRORS = (psycopg.Error, PoolTimeout, OSError)
TRANSIENT_RETRIES = 3


def classify(exc: BaseException) -> Fault:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        if sqlstate[:2] in _UNAVAILABLE_CLASSES or sqlstate in _UNAVAILABLE_CODES:
            return Fault.UNAVAILABLE
        if sqlstate[:2] in _TRANSIENT_CLASSES:
            return Fault.TRANSIENT
        return Fault.REJECTED
    # No SQLSTATE: the server never answered (connection lost, refused, pool exhausted), or
    # psycopg refused the data itself before sending it (e.g. a NUL byte in text).
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout | OSError):
        return Fault.UNAVAILABLE
    return Fault.REJECTED


def describe_error(exc: BaseException) -> str:
    """``SQLSTATE 54000 (ProgramLimitExceeded): string is too long for tsvector ...``"""
    sqlstate = getattr(exc, "sqlstate", None)
    code = f"SQLSTATE {sqlstate} " if sqlstate else ""
    return f"{code}({type(exc).__name__}): {_first_line(exc)}"


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
        events = [e for _, e in valid]
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                began = time.time_ns()
                async with self.pool.connection() as conn, conn.transaction():
                    applied = await _apply_and_record(conn, events)
                _trace_write(valid, began, time.time_ns())
                return applied, []
            except DATABASE_ERRORS as exc:
                fault = classify(exc)
                if fault is Fault.UNAVAILABLE:
                    raise
                if fault is Fault.TRANSIENT and attempt < TRANSIENT_RETRIES:
                    await asyncio.sleep(0.05 * 2**attempt)
                    continue
                log.warning(
                    "batch of %d refused by the database (%s); applying it event by event",
                    len(valid),
                    describe_error(exc),
                )
                break
        return await self._apply_one_by_one(valid)

    async def _apply_one_by_one(
        self, valid: list[tuple[ReceivedRecord, Event]]
    ) -> tuple[int, list[DeadLetter]]:
        applied = 0
        rejected: list[DeadLetter] = []
        async with self.pool.connection() as conn, conn.transaction():
            for record, event in valid:
                for attempt in range(TRANSIENT_RETRIES + 1):
                    try:
                        async with conn.transaction():  # a savepoint per event
                            applied += await _apply_and_record(conn, [event])
                        break
                    except DATABASE_ERRORS as exc:
                        fault = classify(exc)
                        if fault is Fault.UNAVAILABLE:
                            raise
                        if fault is Fault.TRANSIENT and attempt < TRANSIENT_RETRIES:
                            continue
                        reason = (
                            f"database rejected {event.type} {event.event_id} of call "
                            f"{event.call_id}: {describe_error(exc)}"
                        )
                        rejected.append(DeadLetter(record, reason, "rejected"))
                        break
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


async def _apply_and_record(conn: Any, events: list[Event]) -> int:
    """Project the events and, in the same transaction, record the webhook deliveries of the
    new ones and the analysis requests of the calls that ended: a batch applied again (a
    replay, a retry) finds no new event and records none."""
    fresh = await apply_new_events(conn, events)
    if fresh:
        await record_for_events(conn, fresh)
        # A call that ended waits for its analysis: the job workers do it, off this path.
        await request_for_ended(conn, fresh)
    return len(fresh)


def _trace_write(valid: list[tuple[ReceivedRecord, Event]], began_ns: int, ended_ns: int) -> None:
    """Each record's consume span (child of its producer's context, from the record headers)
    and, under it, the PostgreSQL transaction that wrote it: the lanes write many calls in one
    transaction, and each call's trace shows that transaction."""
    for record, event in valid:
        if not record.headers:
            continue
        consume = tracing.tracer.start_span(
            f"consume {event.type}",
            context=tracing.context_of_headers(record.headers),
            kind=SpanKind.CONSUMER,
            start_time=began_ns,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.kafka.offset": record.offset,
                "call.id": event.call_id,
            },
        )
        write = tracing.tracer.start_span(
            "postgres write",
            context=trace.set_span_in_context(consume),
            kind=SpanKind.CLIENT,
            start_time=began_ns,
            attributes={"db.system": "postgresql", "db.batch.size": len(valid)},
        )
        write.end(end_time=ended_ns)
        consume.end(end_time=ended_ns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
