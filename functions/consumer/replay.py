"""``parley events replay --from TIMESTAMP [--call ID]``: read the call-events topic again from a
point in time (Kafka's offsets_for_times) up to where it ends now, and apply everything through
the same processor as the consumer. Rows that exist are left alone (event ids), rows that were
lost or deleted are rebuilt. No consumer group is used, so the live consumer is not disturbed.
With ``--call`` only the call's partition is read (its key decides the partition)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner
from psycopg_pool import AsyncConnectionPool

from functions.consumer.processor import BatchOutcome, BatchProcessor
from shared.bus import BusError, BusUnavailable, ReceivedRecord, call_events_topic
from shared.bus.kafka import KafkaBus
from shared.privacy import TenantPrivacy

log = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    read: int = 0  # records read from Kafka
    matched: int = 0  # records of the requested call (all records without --call)
    applied: int = 0
    duplicates: int = 0
    invalid: int = 0


async def replay(
    bus: KafkaBus,
    pool: AsyncConnectionPool[Any],
    *,
    since: datetime,
    call_id: str | None = None,
    privacy: TenantPrivacy | None = None,
    batch_size: int = 1000,
) -> ReplayReport:
    if since.tzinfo is None:
        raise ValueError("the replay start time needs a timezone")
    topic = call_events_topic(bus.topic_prefix)
    key = call_id.encode() if call_id else None
    processor = BatchProcessor(pool, privacy=privacy or TenantPrivacy(pool))
    consumer = AIOKafkaConsumer(
        **bus.client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        raise BusUnavailable(f"Kafka at {bus.bootstrap} is unreachable: {exc}") from None
    report = ReplayReport()
    try:
        partitions = await _partitions(bus, topic)
        if key is not None:
            partitions = [DefaultPartitioner()(key, partitions, partitions)]
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        ends = await consumer.end_offsets(tps)
        remaining = set()
        for tp in tps:
            start = starts.get(tp)
            if start is not None and start.offset < ends[tp]:
                consumer.seek(tp, start.offset)
                remaining.add(tp)
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch_size)
            batch: list[ReceivedRecord] = []
            for tp, messages in fetched.items():
                for m in messages:
                    if m.offset >= ends[tp]:
                        break
                    report.read += 1
                    if key is None or m.key == key:
                        batch.append(
                            ReceivedRecord(tp.topic, tp.partition, m.offset, m.key, m.value or b"")
                        )
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            if batch:
                _add(report, await processor.process(batch))
    finally:
        await consumer.stop()
    log.info("replay from %s: %s", since.isoformat(), report)
    return report


async def _partitions(bus: KafkaBus, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(**bus.client_options())
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] or not described["partitions"]:
        raise BusError(f"topic {topic} does not exist at {bus.bootstrap}")
    return sorted(p["partition"] for p in described["partitions"])


def _add(report: ReplayReport, outcome: BatchOutcome) -> None:
    report.matched += outcome.received
    report.applied += outcome.applied
    report.duplicates += outcome.duplicates
    report.invalid += len(outcome.dead)
