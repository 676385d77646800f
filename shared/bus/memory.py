"""An in-process bus with Kafka's semantics (append-only log, consumer groups, committed offsets),
so the demo and local development exercise the same consumer code as production."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from shared.bus.base import EventBus, EventConsumer, ReceivedRecord
from shared.bus.topics import call_events_topic
from shared.events import Event


class InProcessBus(EventBus):
    def __init__(self, topic_prefix: str = "parley") -> None:
        self.topic_prefix = topic_prefix
        self._logs: dict[str, list[ReceivedRecord]] = defaultdict(list)
        self._committed: dict[tuple[str, str], int] = defaultdict(int)
        self._appended = asyncio.Event()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, event: Event) -> None:
        topic = call_events_topic(self.topic_prefix)
        await self.publish_raw(topic, event.call_id.encode(), event.to_json())

    async def publish_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        log = self._logs[topic]
        log.append(ReceivedRecord(topic, 0, len(log), key, value))
        self._appended.set()
        self._appended = asyncio.Event()

    def records(self, topic: str) -> list[ReceivedRecord]:
        """Everything published to ``topic`` so far (for tests and replay)."""
        return list(self._logs[topic])

    def consumer(self, group_id: str, *, topics: list[str] | None = None) -> EventConsumer:
        return _InProcessConsumer(self, group_id, topics or [call_events_topic(self.topic_prefix)])


class _InProcessConsumer(EventConsumer):
    def __init__(self, bus: InProcessBus, group_id: str, topics: list[str]) -> None:
        self._bus = bus
        self._group = group_id
        self._topics = topics
        self._position: dict[str, int] = {}

    async def start(self) -> None:
        self._position = {t: self._bus._committed[(self._group, t)] for t in self._topics}

    async def stop(self) -> None:
        return None

    def _pending(self, max_records: int) -> list[ReceivedRecord]:
        out: list[ReceivedRecord] = []
        for topic in self._topics:
            log = self._bus._logs[topic]
            start = self._position[topic]
            batch = log[start : start + max_records - len(out)]
            self._position[topic] = start + len(batch)
            out.extend(batch)
        return out

    async def poll(self, timeout_ms: int = 1000, max_records: int = 500) -> list[ReceivedRecord]:
        records = self._pending(max_records)
        if records or timeout_ms <= 0:
            return records
        appended = self._bus._appended
        try:
            await asyncio.wait_for(appended.wait(), timeout_ms / 1000)
        except TimeoutError:
            return []
        return self._pending(max_records)

    async def commit(self) -> None:
        for topic, position in self._position.items():
            self._bus._committed[(self._group, topic)] = position
