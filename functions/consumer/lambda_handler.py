"""The consumer as a Lambda with an Amazon MSK event source.

MSK delivers ``{"eventSource": "aws:kafka", "records": {"<topic>-<partition>": [{"topic",
"partition", "offset", "timestamp", "key": base64, "value": base64, ...}]}}`` (sample:
``events/samples/msk/call-events-batch.json``). The batch is applied in one transaction; poison
records go to the dead-letter topic; if the database is unreachable the invocation fails and the
event source mapping retries the same batch (offsets only move on success), which the event ids
make harmless. Pool and producer live for the container's life on one event loop.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from typing import Any

from aws_lambda_powertools.utilities.data_classes import KafkaEvent

from functions.consumer.dead_letters import DeadLetterSink
from functions.consumer.processor import BatchProcessor
from shared import tracing
from shared.bus import ReceivedRecord, dead_letter_topic
from shared.bus.kafka import KafkaBus
from shared.db import create_pool
from shared.privacy import TenantPrivacy
from shared.settings import EVERY_PROCESS, KAFKA, TRACING, get_settings

NEEDS = EVERY_PROCESS | KAFKA | TRACING  # poison records go to the dead-letter topic

log = logging.getLogger(__name__)

EVENT_SOURCES = ("aws:kafka", "SelfManagedKafka")
# The event source mapping's consumer group, as dead letters record it.
LAMBDA_GROUP = "parley-lambda"


class MskEventError(ValueError):
    """The Lambda was invoked with something that is not a Kafka event source batch."""


def msk_records(event: dict[str, Any]) -> list[ReceivedRecord]:
    """The records of an MSK batch, values base64-decoded, in partition-offset order."""
    if not isinstance(event, dict) or event.get("eventSource") not in EVENT_SOURCES:
        source = event.get("eventSource") if isinstance(event, dict) else type(event).__name__
        raise MskEventError(f"not a Kafka event source batch (eventSource={source!r})")
    out: list[ReceivedRecord] = []
    for record in KafkaEvent(event).records:
        try:
            key, value = record.decoded_key, record.decoded_value
        except (binascii.Error, ValueError):
            # Kept as-is so the processor sends it to the dead-letter topic.
            key, value = None, str(record.get("value", "")).encode()
        headers = tuple((name, bytes(data)) for name, data in record.decoded_headers.items())
        out.append(
            ReceivedRecord(record.topic, record.partition, record.offset, key, value, headers)
        )
    return out


async def handle(event: dict[str, Any], processor: BatchProcessor) -> dict[str, int]:
    outcome = await processor.process(msk_records(event))
    summary = {
        "received": outcome.received,
        "applied": outcome.applied,
        "duplicates": outcome.duplicates,
        "dead_lettered": len(outcome.dead),
    }
    log.info("msk batch %s", summary)
    return summary


class _Container:
    """What one Lambda container keeps between invocations."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.processor: BatchProcessor | None = None
        self.pool: Any = None
        self.bus: KafkaBus | None = None

    async def get_processor(self) -> BatchProcessor:
        if self.processor is None:
            settings = get_settings()
            tracing.configure(settings, "parley-consumer")
            pool = self.pool = await create_pool(settings.database_url, max_size=2)
            sink = None
            if settings.kafka_bootstrap:
                bus = KafkaBus.from_settings(settings)
                await bus.start()
                self.bus = bus
                sink = DeadLetterSink(
                    bus, dead_letter_topic(settings.kafka_topic_prefix), pool, group_id=LAMBDA_GROUP
                )
            self.processor = BatchProcessor(pool, privacy=TenantPrivacy(pool), dead_letters=sink)
        return self.processor

    async def close(self) -> None:
        if self.bus is not None:
            await self.bus.stop()
        if self.pool is not None:
            await self.pool.close()


_container: _Container | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Lambda entry point (``functions.consumer.lambda_handler.handler``)."""
    global _container
    if _container is None:
        _container = _Container()

    async def run() -> dict[str, int]:
        assert _container is not None
        return await handle(event, await _container.get_processor())

    try:
        return _container.loop.run_until_complete(run())
    finally:
        tracing.flush()  # the container is frozen once the handler returns


def shutdown() -> None:
    """Close the container's pool and producer (tests, local runs)."""
    global _container
    if _container is not None:
        _container.loop.run_until_complete(_container.close())
        _container.loop.close()
        _container = None
