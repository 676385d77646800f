"""The long-running consumer (``parley events consume``, EKS, local): poll a batch, apply it in
one transaction, publish its dead letters, then commit the offsets — in that order, so a crash at
any point re-delivers the batch and the database skips what it already has."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from functions.consumer.dead_letters import DeadLetterSink
from functions.consumer.metrics import ConsumerMetrics
from functions.consumer.processor import BatchOutcome, BatchProcessor, PreparedBatch
from shared.bus import BusError, dead_letter_topic
from shared.bus.kafka import KafkaBus, KafkaEventConsumer
from shared.privacy import TenantPrivacy

log = logging.getLogger(__name__)

DEFAULT_GROUP = "parley-projector"
MAX_RETRY_BACKOFF_S = 30.0
AfterCommit = Callable[[BatchOutcome], Awaitable[None]]
InFlight = tuple["asyncio.Task[BatchOutcome | None]", PreparedBatch]


@dataclass
class ConsumerStats:
    batches: int = 0
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0


class ConsumerService:
    def __init__(
        self,
        bus: KafkaBus,
        pool: AsyncConnectionPool[Any],
        *,
        group_id: str = DEFAULT_GROUP,
        privacy: TenantPrivacy | None = None,
        batch_size: int = 1000,
        lanes: int = 2,
        poll_timeout_ms: int = 200,
        retry_backoff_s: float = 1.0,
        after_db_commit: AfterCommit | None = None,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.bus = bus
        # On the process's registry (shared/metrics.py); a registry of its own when none given.
        self.metrics = metrics if metrics is not None else ConsumerMetrics(CollectorRegistry())
        self.group_id = group_id
        self.batch_size = batch_size
        self.poll_timeout_ms = poll_timeout_ms
        self.retry_backoff_s = retry_backoff_s
        # Runs after the database commit and before the offset commit (metrics, tests).
        self.after_db_commit = after_db_commit
        self.processor = BatchProcessor(
            pool,
            privacy=privacy if privacy is not None else TenantPrivacy(pool),
            dead_letters=DeadLetterSink(
                bus, dead_letter_topic(bus.topic_prefix), pool, group_id=group_id
            ),
            lanes=lanes,
        )
        self.stats = ConsumerStats()
        self.lag: dict[int, int] = {}
        # False while a batch waits for the database or the broker (the readiness probe).
        self.ready = True

    async def run(self, stop: asyncio.Event) -> ConsumerStats:
        """Consume until ``stop`` is set. The bus must be started (it publishes dead letters).

        Batch N+1 is fetched, validated and redacted while batch N's transaction runs; the
        transactions themselves run one after the other, in order."""
        consumer = self.bus.consumer(self.group_id)
        assert isinstance(consumer, KafkaEventConsumer)
        await consumer.start()
        in_flight: InFlight | None = None
        try:
            while not stop.is_set():
                records = await consumer.poll(
                    timeout_ms=self.poll_timeout_ms, max_records=self.batch_size
                )
                prepared = await self.processor.prepare(records) if records else None
                if in_flight is not None:
                    finished = await self._finish(consumer, in_flight)
                    in_flight = None
                    if not finished:
                        break  # stopped while the database was away: nothing is committed
                if prepared is not None:
                    in_flight = (asyncio.create_task(self._apply(prepared, stop)), prepared)
                await self._measure_lag(consumer)
            if in_flight is not None:
                await self._finish(consumer, in_flight)
                in_flight = None
        finally:
            if in_flight is not None:  # failing: let the transaction end, commit no offsets
                with contextlib.suppress(Exception):
                    await in_flight[0]
            await consumer.stop()
        return self.stats

    async def _finish(self, consumer: KafkaEventConsumer, in_flight: InFlight) -> bool:
        """After the batch's database commit: count, hook, then commit exactly its offsets."""
        task, prepared = in_flight
        outcome = await task
        if outcome is None:
            return False
        self._count(outcome)
        if self.after_db_commit is not None:
            await self.after_db_commit(outcome)
        offsets = {TopicPartition(t, p): o for (t, p), o in prepared.next_offsets().items()}
        try:
            await consumer.raw.commit(offsets)
        except KafkaError as exc:  # a rebalance: the batch comes again and is skipped
            log.warning("offset commit failed (%s); the batch will be redelivered", exc)
        return True

    async def _apply(self, prepared: PreparedBatch, stop: asyncio.Event) -> BatchOutcome | None:
        """Apply the batch, retrying with backoff while the database or the broker is
        unreachable (the processor raises nothing else: refused records are dead letters)."""
        backoff = self.retry_backoff_s
        while True:
            try:
                outcome = await self.processor.apply(prepared)
                self.ready = True
                return outcome
            except (psycopg.Error, PoolTimeout, BusError, KafkaError, OSError) as exc:
                self.ready = False
                log.error(
                    "batch of %d not applied, database or broker unavailable (%s); "
                    "retrying in %.1fs",
                    len(prepared.records),
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    backoff,
                )
            try:
                await asyncio.wait_for(stop.wait(), backoff)
                return None
            except TimeoutError:
                backoff = min(backoff * 2, MAX_RETRY_BACKOFF_S)

    def _count(self, outcome: BatchOutcome) -> None:
        s = self.stats
        s.batches += 1
        s.received += outcome.received
        s.applied += outcome.applied
        s.duplicates += outcome.duplicates
        s.dead_lettered += len(outcome.dead)
        self.metrics.applied.inc(outcome.applied)
        self.metrics.duplicates.inc(outcome.duplicates)
        for letter in outcome.dead:
            self.metrics.dead_lettered.labels(letter.kind).inc()

    async def _measure_lag(self, consumer: KafkaEventConsumer) -> None:
        raw = consumer.raw
        for tp in raw.assignment():
            high = raw.highwater(tp)
            if high is None:
                continue
            lag = max(0, high - await raw.position(tp))
            self.lag[tp.partition] = lag
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
