"""The media node's producer: every event goes through a local fsynced spool, then to Kafka.

``publish`` only appends to memory and returns — a call never waits on the broker or the disk.
A journal task redacts (per tenant), frames and fsyncs events to the :class:`Spool` in batches;
a forwarder task sends the spool to Kafka in order and moves the spool's cursor when the broker
has acknowledged. When Kafka is slow or down the spool simply grows, and it drains in order when
the broker is back. Per-call order holds because one forwarder reads one log and sends a chunk
as at most one batch per partition, waiting for the acks before sending the next chunk; a failed
chunk is sent again whole (Kafka may then hold a duplicate, which the consumer skips by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared import tracing
from shared.bus.base import BusError, EventBus, EventConsumer
from shared.bus.kafka import KafkaBus
from shared.bus.spool import Position, Spool, SpooledRecord
from shared.bus.topics import call_events_topic
from shared.events import Event
from shared.privacy import redact_event
from shared.settings import Settings

log = logging.getLogger(__name__)

Redactor = Callable[[Event], Awaitable[Event]]


class SpoolMetrics:
    """The spool's series (the alert rules in infra/observability depend on these names)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.bytes = Gauge(
            "parley_event_spool_bytes",
            "Bytes of events spooled locally and not yet acknowledged by Kafka.",
            registry=registry,
        )
        self.oldest_age = Gauge(
            "parley_event_spool_oldest_age_seconds",
            "Age of the oldest event not yet acknowledged by Kafka (0 when the spool is empty).",
            registry=registry,
        )
        self.full = Gauge(
            "parley_event_spool_full",
            "1 while the event spool is full (alert: events wait in memory).",
            registry=registry,
        )
        self.dropped = Counter(
            "parley_event_spool_dropped",
            "Events dropped because the spool was full and the in-memory buffer too (alert).",
            registry=registry,
        )
        self.broker_connected = Gauge(
            "parley_event_broker_connected",
            "1 while the event forwarder has a working Kafka producer.",
            registry=registry,
        )


# Kafka's default broker limit is ~1 MiB per record batch; stay well under it.
MAX_BATCH_BYTES = 512 * 1024


class DurableBus(EventBus):
    def __init__(
        self,
        kafka: KafkaBus,
        spool_dir: Path,
        *,
        max_spool_bytes: int = 1 << 30,
        segment_bytes: int = 64 << 20,
        redact: Redactor | None = None,
        max_memory_events: int = 100_000,
        send_timeout_s: float = 15.0,
        chunk_records: int = 5000,
        linger_s: float = 0.005,
        retry_backoff_s: tuple[float, float] = (0.2, 5.0),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.kafka = kafka
        # The process's registry (shared/metrics.py); a bus of its own when none is handed in.
        self.metrics = SpoolMetrics(registry if registry is not None else CollectorRegistry())
        self.spool = Spool(spool_dir, max_bytes=max_spool_bytes, segment_bytes=segment_bytes)
        self.redact = redact
        self.max_memory_events = max_memory_events
        self.send_timeout_s = send_timeout_s
        self.chunk_records = chunk_records
        # Group commit: one fsync and at most one send round per linger (fewer syscalls and
        # fuller produce requests) for a few milliseconds of delay.
        self.linger_s = linger_s
        self.retry_backoff_s = retry_backoff_s
        self._memory: deque[tuple[str, bytes | None, Event | bytes, int]] = deque()
        self._journal_wakeup = asyncio.Event()
        self._forward_wakeup = asyncio.Event()
        self._progress = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()
        # (topic, key, partition count) -> partition: murmur2 in pure Python is costly per record.
        self._partition_of: dict[tuple[str, bytes | None, int], int] = {}
        self._closing = False
        self._accepted = 0  # events taken by publish()
        self._spooled = 0  # events fsynced to the spool
        self._forwarded = 0  # events acknowledged by Kafka (this process)
        self._discarded = 0  # accepted, then dropped (spool full at shutdown)
        self.dropped = 0  # all dropped events (the alert counter's value for this bus)
        self.spool_full = False
        self._last_full_log = 0.0

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the spool and start the background tasks. Never waits for the broker."""
        if self._tasks:
            return
        await asyncio.to_thread(self.spool.open)
        self._closing = False
        self.metrics.bytes.set_function(lambda: self.spool.pending_bytes)
        self.metrics.oldest_age.set_function(self.spool.oldest_age_s)
        self._tasks = [
            asyncio.create_task(self._journal(), name="event-spool-journal"),
            asyncio.create_task(self._forward(), name="event-spool-forwarder"),
        ]
        self._forward_wakeup.set()  # records left from a previous run go first

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Write what is in memory to the spool, give Kafka ``drain_timeout_s`` to take the
        backlog, then stop. What Kafka did not take stays in the spool for the next start."""
        if not self._tasks:
            return
        self._closing = True
        self._journal_wakeup.set()
        journal, forwarder = self._tasks
        with contextlib.suppress(asyncio.CancelledError):
            await journal
        with contextlib.suppress(TimeoutError):
            await self.flush(drain_timeout_s)
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forwarder
        self._tasks = []
        await self._close_producer()
        await asyncio.to_thread(self.spool.close)
        self.metrics.bytes.set_function(lambda: 0)
        self.metrics.oldest_age.set_function(lambda: 0)

    # --- publishing --------------------------------------------------------------------------
    async def publish(self, event: Event) -> None:
        self._accept(call_events_topic(self.kafka.topic_prefix), event.call_id.encode(), event)

    async def publish_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._accept(topic, key, value)

    def _accept(self, topic: str, key: bytes | None, item: Event | bytes) -> None:
        if not self._tasks or self._closing:
            raise BusError("DurableBus.publish before start() or after stop()")
        if len(self._memory) >= self.max_memory_events:
            self.dropped += 1
            self.metrics.dropped.inc()
            self._log_full("event spool and memory buffer are full: dropping events")
            return
        self._memory.append((topic, key, item, int(time.time() * 1000)))
        self._accepted += 1
        self._journal_wakeup.set()

    async def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything published so far is acknowledged by Kafka (TimeoutError)."""
        target = self._accepted - self._discarded
        async with asyncio.timeout(timeout_s), self._progress:
            await self._progress.wait_for(lambda: self._spooled >= target and self.spool.empty)

    def consumer(self, group_id: str, *, topics: list[str] | None = None) -> EventConsumer:
        return self.kafka.consumer(group_id, topics=topics)

    @property
    def in_memory(self) -> int:
        """Events accepted but not yet written to the spool."""
        return len(self._memory)

    @property
    def connected(self) -> bool:
        return self._producer is not None

    # --- journal: memory -> spool ------------------------------------------------------------
    async def _journal(self) -> None:
        while True:
            if not self._memory:
                if self._closing:
                    return
                await self._journal_wakeup.wait()
                self._journal_wakeup.clear()
                if not self._closing:
                    await asyncio.sleep(self.linger_s)  # gather a group for one fsync
                continue
            batch = [self._memory[i] for i in range(min(len(self._memory), 2000))]
            records = [await self._to_record(*item) for item in batch]
            try:
                written = await asyncio.to_thread(self.spool.append, records)
            except OSError as exc:  # disk full or failing: keep the events in memory, retry
                self._set_full(True)
                self._log_full(f"event spool cannot be written ({exc})")
                await asyncio.sleep(1.0)
                continue
            for _ in range(written):
                self._memory.popleft()
            self._spooled += written
            if written:
                self._forward_wakeup.set()
            if written < len(records):
                self._set_full(True)
                self._log_full("event spool is full: events wait in memory until Kafka drains it")
                if self._closing:
                    lost = len(self._memory)
                    self.dropped += lost
                    self._discarded += lost
                    self.metrics.dropped.inc(lost)
                    log.error("event spool full at shutdown: %d events not persisted", lost)
                    self._memory.clear()
                    return
                await asyncio.sleep(0.5)
            else:
                self._set_full(False)

    async def _to_record(
        self, topic: str, key: bytes | None, item: Event | bytes, enqueued_ms: int
    ) -> SpooledRecord:
        if isinstance(item, Event):
            if self.redact is not None:
                try:
                    item = await self.redact(item)
                except Exception:
                    log.exception("redaction failed; masking the event with the default rules")
                    item = redact_event(item)  # fail closed: never spool raw text
            item = item.to_json()
        return SpooledRecord(topic, key, item, enqueued_ms)

    def _set_full(self, full: bool) -> None:
        self.spool_full = full
        self.metrics.full.set(1 if full else 0)

    def _log_full(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_full_log > 10:
            self._last_full_log = now
            log.error(
                "%s (spool %s, %d bytes)", message, self.spool.directory, self.spool.disk_bytes
            )

    # --- forwarder: spool -> Kafka -----------------------------------------------------------
    async def _forward(self) -> None:
        backoff = self.retry_backoff_s[0]
        last_round = 0.0
        while True:
            wait = last_round + self.linger_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            last_round = time.monotonic()
            self._forward_wakeup.clear()  # before reading, so no append goes unnoticed
            chunk = await asyncio.to_thread(self.spool.read, self.chunk_records)
            if not chunk:
                async with self._progress:
                    self._progress.notify_all()
                await self._forward_wakeup.wait()
                continue
            try:
                producer = await self._ensure_producer()
                sent, end = await self._send_chunk(producer, chunk)
            except Exception as exc:
                expected = isinstance(exc, KafkaError | BusError | OSError | TimeoutError)
                log.log(
                    logging.WARNING if expected else logging.ERROR,
                    "Kafka did not take %d spooled events (%s); retrying in %.1fs",
                    len(chunk),
                    exc or type(exc).__name__,
                    backoff,
                    exc_info=not expected,
                )
                await self._close_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_backoff_s[1])
                continue
            backoff = self.retry_backoff_s[0]
            await asyncio.to_thread(self.spool.commit, end)
            self._forwarded += sent
            async with self._progress:
                self._progress.notify_all()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        await self.kafka.ensure_topics()
        producer = AIOKafkaProducer(
            **self.kafka.client_options(),
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            max_batch_size=MAX_BATCH_BYTES,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        self.metrics.broker_connected.set(1)
        log.info("event forwarder connected to Kafka at %s", self.kafka.bootstrap)
        return producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        self.metrics.broker_connected.set(0)
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.send_timeout_s)

    def _partition(self, topic: str, key: bytes | None, partitions: list[int]) -> int:
        if key is None:
            return int(self._partitioner(None, partitions, partitions))
        cache_key = (topic, key, len(partitions))
        partition = self._partition_of.get(cache_key)
        if partition is None:
            if len(self._partition_of) > 100_000:
                self._partition_of.clear()
            partition = self._partition_of[cache_key] = self._partitioner(
                key, partitions, partitions
            )
        return partition

    async def _send_chunk(
        self, producer: AIOKafkaProducer, chunk: list[tuple[SpooledRecord, Position]]
    ) -> tuple[int, Position]:
        """Send records as at most one batch per partition; stop at the first that does not fit.
        A batch fails or succeeds whole, so a retry can never reorder a call's events."""
        batches: dict[tuple[str, int], object] = {}
        partitions: dict[str, list[int]] = {}
        sent = 0
        end = chunk[0][1]
        for record, after in chunk:
            if record.topic not in partitions:
                partitions[record.topic] = sorted(await producer.partitions_for(record.topic))
            tp = (record.topic, self._partition(record.topic, record.key, partitions[record.topic]))
            batch = batches.get(tp)
            if batch is None:
                batch = batches[tp] = producer.create_batch()
            if (
                batch.append(  # type: ignore[attr-defined]
                    key=record.key,
                    value=record.value,
                    timestamp=record.enqueued_at_ms,
                    headers=tracing.kafka_headers(record.key),
                )
                is None
            ):
                if sent == 0:
                    raise BusError(f"a spooled event of {len(record.value)} bytes exceeds a batch")
                break
            sent += 1
            end = after
        futures = [
            await producer.send_batch(batch, topic, partition=partition)
            for (topic, partition), batch in batches.items()
        ]
        done, pending = await asyncio.wait(futures, timeout=self.send_timeout_s)
        if pending:
            raise TimeoutError(f"no acknowledgement within {self.send_timeout_s}s")
        for future in done:
            future.result()
        return sent, end


def durable_bus_from_settings(
    settings: Settings,
    *,
    redact: Redactor | None = None,
    registry: CollectorRegistry | None = None,
) -> DurableBus:
    """The production producer: Kafka from settings, spool under ``data_dir/spool``."""
    if not settings.kafka_bootstrap:
        raise BusError("PARLEY_KAFKA_BOOTSTRAP is empty: the durable producer needs Kafka")
    kafka = KafkaBus.from_settings(settings)
    return DurableBus(kafka, settings.data_dir / "spool", redact=redact, registry=registry)
