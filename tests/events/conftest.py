"""Helpers for the event pipeline tests: simulated calls, a consumer running in the background,
reading a topic back, waiting for rows."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from functions.consumer.service import ConsumerService
from shared.bus.kafka import KafkaBus
from shared.events import (
    CallEnded,
    CallStarted,
    DispositionSet,
    Event,
    IntentDetected,
    LatencyMeasured,
    TurnAgent,
    TurnUser,
)
from tests.events.broker import KafkaBroker


def call_events(call_id: str, n: int, tenant: str = "t1") -> list[Event]:
    """A call of ``n`` events (n >= 4): start, turns with intents and latencies, end."""
    payloads: list[Any] = [CallStarted(agent_id="acme-shop", from_number="+15550001")]
    turn = 0
    while len(payloads) < n - 2:
        kind = len(payloads) % 4
        if kind == 1:
            payloads.append(TurnAgent(turn_index=turn, text=f"agent {turn}", start_ms=0, end_ms=1))
        elif kind == 2:
            payloads.append(TurnUser(turn_index=turn, text=f"caller {turn}", start_ms=1, end_ms=2))
        elif kind == 3:
            payloads.append(IntentDetected(turn_index=turn, intent=f"i{turn % 3}", confidence=0.9))
        else:
            payloads.append(LatencyMeasured(turn_index=turn, voice_to_voice_ms=400.0))
            turn += 1
    payloads.append(DispositionSet(disposition="resolved", summary="done"))
    payloads.append(CallEnded(reason="hangup", duration_ms=1000))
    return [
        Event(tenant_id=tenant, call_id=call_id, seq=i, payload=p) for i, p in enumerate(payloads)
    ]


def assert_first_seen_in_order(records: list[Any]) -> None:
    """Per call (key), the first time each seq appears, the seqs go up: the order the
    consumer applies them in."""
    seen: dict[bytes, list[int]] = defaultdict(list)
    firsts: set[tuple[bytes, int]] = set()
    for r in records:
        seq = Event.model_validate_json(r.value).seq
        if (r.key, seq) not in firsts:
            firsts.add((r.key, seq))
            seen[r.key].append(seq)
    for key, seqs in seen.items():
        assert seqs == sorted(seqs), f"{key!r} out of order: {seqs[:20]}"


def new_call_id() -> str:
    return f"call-{uuid.uuid4().hex[:10]}"


async def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
    """Every record of ``topic`` (at least ``expected``), without a consumer group."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(got) < expected:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(messages)
        # Anything beyond what was expected (duplicates) shows up within a short extra poll.
        for messages in (await consumer.getmany(timeout_ms=500)).values():
            got.extend(messages)
    finally:
        await consumer.stop()
    return got


async def count_events(pool: Any, call_ids: list[str]) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM call_events WHERE call_id = ANY(%s)", (call_ids,)
        )
        row = await cur.fetchone()
    return int(row["n"])


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool], timeout_s: float = 60, every_s: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        for _ in itertools.count():
            result = condition()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(every_s)


async def wait_for_events(
    pool: Any, call_ids: list[str], expected: int, timeout_s: float = 60
) -> None:
    async def landed() -> bool:
        return await count_events(pool, call_ids) >= expected

    await wait_until(landed, timeout_s, every_s=0.2)


@contextlib.asynccontextmanager
async def running_consumer(service: ConsumerService) -> AsyncIterator[ConsumerService]:
    """The service consuming in the background; stopped (and its errors raised) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def started(bus: KafkaBus) -> AsyncIterator[KafkaBus]:
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A private broker this module may stop and restart (the shared one stays up)."""
    broker = KafkaBroker(Path(tmp_path_factory.mktemp("kafka")))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(kill=True)
