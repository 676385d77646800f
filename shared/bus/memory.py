"""An in-process bus with Kafka's semantics (append-only log, consumer groups, committed offsets),
so the demo and local development exercise the same consumer code as production.

Like a Kafka topic it has a retention: once a topic holds more than ``retain_records``, the
oldest records that every consumer group has committed are dropped, so a long-running embedded
node does not keep every event it ever published. Records no group has committed yet are kept
whatever the size: nothing is lost before it has been consumed. A group that starts after a
trim begins at the earliest record kept (Kafka's ``auto.offset.reset=earliest``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from shared.bus.base import EventBus, EventConsumer, ReceivedRecord
from shared.bus.topics import call_events_topic
from shared.events import Event


class InProcessBus(EventBus):
    def __init__(self, topic_prefix: str = "parley", *, retain_records: int = 10_000) -> None:
        self.topic_prefix = topic_prefix
        self.retain_records = retain_records
        self._logs: dict[str, list[ReceivedRecord]] = defaultdict(list)
        self._first: dict[str, int] = defaultdict(int)  # offset of each log's first record kept
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
        log.append(ReceivedRecord(topic, 0, self._first[topic] + len(log), key, value))
        self._appended.set()
        self._appended = asyncio.Event()

    def records(self, topic: str) -> list[ReceivedRecord]:
        """The records of ``topic`` still kept (all of them, below the retention)."""
        return list(self._logs[topic])

    def _slice(self, topic: str, offset: int, count: int) -> list[ReceivedRecord]:
        start = max(offset - self._first[topic], 0)
        return self._logs[topic][start : start + count]

    def _commit(self, group: str, topic: str, offset: int) -> None:
        self._committed[(group, topic)] = offset
        log = self._logs[topic]
        excess = len(log) - self.retain_records
        if excess <= 0:
            return
        consumed = min(o for (_, t), o in self._committed.items() if t == topic)
        drop = min(excess, consumed - self._first[topic])
        if drop > 0:
            del log[:drop]
            self._first[topic] += drop

    def consumer(self, group_id: str, *, topics: list[str] | None = None) -> EventConsumer:
        return _InProcessConsumer(self, group_id, topics or [call_events_topic(self.topic_prefix)])


class _InProcessConsumer(EventConsumer):
    def __init__(self, bus: InProcessBus, group_id: str, topics: list[str]) -> None:
        self._bus = bus
        self._group = group_id
        self._topics = topics
        self._position: dict[str, int] = {}

    async def start(self) -> None:
        bus, group = self._bus, self._group
        self._position = {t: max(bus._committed[(group, t)], bus._first[t]) for t in self._topics}

    async def stop(self) -> None:
        return None

    def _pending(self, max_records: int) -> list[ReceivedRecord]:
        out: list[ReceivedRecord] = []
        for topic in self._topics:
            start = max(self._position[topic], self._bus._first[topic])
            batch = self._bus._slice(topic, start, max_records - len(out))
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
            self._bus._commit(self._group, topic, position)
