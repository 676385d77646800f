"""The media node's producer: nothing lost or duplicated when Kafka is down, slow or full."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from functions.consumer.service import ConsumerService
from shared.bus import BusError, call_events_topic
from shared.bus.durable import DurableBus
from shared.bus.kafka import KafkaBus
from tests.events.broker import KafkaBroker, free_port
from tests.events.conftest import (
    assert_first_seen_in_order,
    call_events,
    new_call_id,
    read_topic,
    running_consumer,
    started,
    wait_for_events,
    wait_until,
)

pytestmark = pytest.mark.integration


def metric(bus: DurableBus, name: str) -> float:
    value = bus.metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


def unreachable_kafka(prefix: str) -> KafkaBus:
    return KafkaBus(f"127.0.0.1:{free_port()}", topic_prefix=prefix, request_timeout_ms=2000)


async def test_events_spool_while_kafka_is_down_and_drain_in_order_after_a_restart(
    kafka_bootstrap: str, kafka_topic_prefix: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    call_id = new_call_id()
    events = call_events(call_id, 60)
    down = DurableBus(unreachable_kafka(kafka_topic_prefix), spool, retry_backoff_s=(0.1, 0.5))
    await down.start()
    for event in events[:40]:
        await down.publish(event)  # returns at once: the broker is not even there
    await wait_until(lambda: down.in_memory == 0 and down.spool.pending_bytes > 0, 10)
    await asyncio.sleep(0.2)
    assert metric(down, "parley_event_spool_bytes") == down.spool.pending_bytes > 0
    assert metric(down, "parley_event_spool_oldest_age_seconds") > 0
    assert metric(down, "parley_event_broker_connected") == 0
    with pytest.raises(TimeoutError):
        await down.flush(0.5)
    await down.stop(drain_timeout_s=0.5)  # the process ends with the events still spooled

    registry = CollectorRegistry()  # the process's, as shared/metrics.py hands it in
    up = DurableBus(
        KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix), spool, registry=registry
    )
    await up.start()
    for event in events[40:]:
        await up.publish(event)
    await up.flush(30)
    assert up.metrics.registry is registry
    assert metric(up, "parley_event_spool_bytes") == 0
    assert metric(up, "parley_event_spool_oldest_age_seconds") == 0
    await up.stop()
    records = await read_topic(kafka_bootstrap, call_events_topic(kafka_topic_prefix), 60)
    assert [r.value for r in records] == [e.to_json() for e in events]  # in order, once


async def test_a_full_spool_is_an_alert_not_a_crash(
    kafka_topic_prefix: str, tmp_path: Path
) -> None:
    bus = DurableBus(
        unreachable_kafka(kafka_topic_prefix),
        tmp_path / "spool",
        max_spool_bytes=64 * 1024,
        max_memory_events=300,
    )
    await bus.start()
    events = call_events(new_call_id(), 1000)
    for i, event in enumerate(events):
        await bus.publish(event)  # never raises, never waits
        if i % 50 == 0:
            await asyncio.sleep(0.01)
    await wait_until(lambda: bus.spool_full, 10)
    assert metric(bus, "parley_event_spool_full") == 1
    assert bus.dropped > 0 and metric(bus, "parley_event_spool_dropped_total") >= bus.dropped
    assert bus.spool.disk_bytes <= 64 * 1024
    await bus.stop(drain_timeout_s=0.1)
    with pytest.raises(BusError, match="after stop"):
        await bus.publish(events[0])


async def test_broker_stopped_mid_call_and_restarted_loses_and_duplicates_nothing(
    own_broker: KafkaBroker, kafka_topic_prefix: str, db_pool: Any, tmp_path: Path
) -> None:
    kafka = KafkaBus(own_broker.bootstrap, topic_prefix=kafka_topic_prefix, request_timeout_ms=3000)
    producer = DurableBus(kafka, tmp_path / "spool", send_timeout_s=3, retry_backoff_s=(0.2, 1.0))
    call_ids = [new_call_id() for _ in range(20)]
    stories = {c: call_events(c, 50) for c in call_ids}
    await producer.start()

    async def talk(turns: slice) -> None:
        for step in range(turns.start, turns.stop):
            for c in call_ids:
                await producer.publish(stories[c][step])
            await asyncio.sleep(0.005)

    await talk(slice(0, 20))
    await producer.flush(30)  # the first part of every call reached Kafka
    own_broker.stop(kill=True)  # the broker dies in the middle of the calls
    await talk(slice(20, 40))  # the calls go on: publishing does not wait for the broker
    await wait_until(lambda: not producer.spool.empty, 10)
    assert producer.spool.pending_bytes > 0
    await asyncio.to_thread(own_broker.start)
    await talk(slice(40, 50))
    await producer.flush(120)
    await producer.stop()

    records = await read_topic(own_broker.bootstrap, call_events_topic(kafka_topic_prefix), 1000)
    sent = {e.event_id for s in stories.values() for e in s}
    assert_first_seen_in_order(records)
    service = ConsumerService(kafka, db_pool, group_id="g")
    async with started(kafka), running_consumer(service):
        await wait_for_events(db_pool, call_ids, 1000)
        await asyncio.sleep(0.5)
    async with db_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_id FROM call_events WHERE call_id = ANY(%s)", (call_ids,)
        )
        stored = [r["event_id"] for r in await cur.fetchall()]
    assert len(stored) == 1000 and set(stored) == sent  # nothing lost, nothing twice
    assert service.stats.applied == 1000
    assert service.stats.duplicates == len(records) - 1000  # Kafka's resends were skipped
