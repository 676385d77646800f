"""A call's events reach the consumer even when the bus refuses them for a while."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from media_nodes.pipeline.events import CallEvents
from shared.bus import BusError, call_events_topic
from shared.bus.durable import DurableBus
from shared.bus.kafka import KafkaBus
from shared.events import CallEnded, CallStarted, Event, TurnUser
from tests.events.conftest import new_call_id, read_topic

pytestmark = pytest.mark.integration


async def test_events_the_bus_refused_reach_the_consumer_once_it_takes_them_again(
    kafka_bootstrap: str, kafka_topic_prefix: str, tmp_path: Path
) -> None:
    bus = DurableBus(KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix), tmp_path / "spool")
    probe = Event(
        tenant_id="t1", call_id="probe", seq=0, payload=CallEnded(reason="hangup", duration_ms=0)
    )
    with pytest.raises(BusError):  # a real refusal: the node's bus is not running
        await bus.publish(probe)

    call_id = new_call_id()
    events = CallEvents(bus, tenant_id="t1", call_id=call_id, retry_backoff_s=(0.02, 0.1))
    events.emit(CallStarted(agent_id="acme-shop", from_number="+15550001"))
    for turn in range(3):
        events.emit(TurnUser(turn_index=turn, text=f"caller {turn}", start_ms=0, end_ms=1))
    await asyncio.sleep(0.3)  # offered, refused, offered again...
    await events.close(timeout_s=0.2)  # the call is over; its events are still not taken

    await bus.start()  # the bus recovers
    try:
        records = await read_topic(
            kafka_bootstrap, call_events_topic(kafka_topic_prefix), len(events.emitted)
        )
    finally:
        await bus.stop()
    assert [r.value for r in records] == [e.to_json() for e in events.emitted]  # in order, once
