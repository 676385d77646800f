"""Kafka bus on aiokafka: idempotent producer, acks=all, key = call id (per-call order)."""

from __future__ import annotations

import asyncio
import os
import ssl

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from shared import tracing
from shared.bus.base import BusError, BusUnavailable, EventBus, EventConsumer, ReceivedRecord
from shared.bus.topics import call_events_topic, dead_letter_topic
from shared.events import Event
from shared.settings import Settings


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """SASL/OAUTHBEARER tokens for MSK IAM auth, signed with the pod's or Lambda's AWS role."""

    def __init__(self, region: str) -> None:
        self.region = region

    async def token(self) -> str:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, _expiry_ms = await asyncio.to_thread(
            MSKAuthTokenProvider.generate_auth_token, self.region
        )
        return str(token)


class KafkaBus(EventBus):
    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "parley",
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str = "",
        partitions: int = 6,
        replication: int = 1,
        request_timeout_ms: int = 10_000,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.security_protocol = security_protocol
        self.sasl_mechanism = sasl_mechanism
        self.partitions = partitions
        self.replication = replication
        self.request_timeout_ms = request_timeout_ms
        self._producer: AIOKafkaProducer | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaBus:
        return cls(
            settings.kafka_bootstrap,
            topic_prefix=settings.kafka_topic_prefix,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
        )

    def client_options(self) -> dict[str, object]:
        """Connection options shared by producers, consumers and admin clients."""
        return self._common()

    def _common(self) -> dict[str, object]:
        options: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.security_protocol != "PLAINTEXT":
            options["ssl_context"] = ssl.create_default_context()
        if self.sasl_mechanism == "AWS_MSK_IAM":
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if not region:
                raise BusError("MSK IAM auth needs AWS_REGION to be set")
            options["sasl_mechanism"] = "OAUTHBEARER"
            options["sasl_oauth_token_provider"] = MskIamTokenProvider(region)
        return options

    @property
    def topics(self) -> list[str]:
        return [call_events_topic(self.topic_prefix), dead_letter_topic(self.topic_prefix)]

    async def ensure_topics(self) -> None:
        """Create the call-events and dead-letter topics if they do not exist."""
        admin = AIOKafkaAdminClient(**self._common())
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in self.topics if t not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [NewTopic(t, self.partitions, self.replication) for t in missing]
                    )
                except TopicAlreadyExistsError:
                    pass
        except KafkaConnectionError as exc:
            raise BusUnavailable(f"Kafka at {self.bootstrap} is unreachable: {exc}") from None
        finally:
            await admin.close()

    async def start(self) -> None:
        if self._producer is not None:
            return
        await self.ensure_topics()
        producer = AIOKafkaProducer(
            **self._common(),
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            compression_type=None,
        )
        try:
            await producer.start()
        except KafkaConnectionError as exc:
            await producer.stop()
            raise BusUnavailable(f"Kafka at {self.bootstrap} is unreachable: {exc}") from None
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, event: Event) -> None:
        await self.publish_raw(
            call_events_topic(self.topic_prefix), event.call_id.encode(), event.to_json()
        )

    async def publish_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self._producer is None:
            raise BusError("KafkaBus.publish before start()")
        try:
            await self._producer.send_and_wait(
                topic, value=value, key=key, headers=tracing.kafka_headers(key)
            )
        except KafkaConnectionError as exc:
            raise BusUnavailable(f"Kafka at {self.bootstrap} is unreachable: {exc}") from None
        except KafkaError as exc:
            raise BusError(f"Kafka refused the record for {topic}: {exc}") from None

    def consumer(self, group_id: str, *, topics: list[str] | None = None) -> EventConsumer:
        return KafkaEventConsumer(self, group_id, topics or [call_events_topic(self.topic_prefix)])


class KafkaEventConsumer(EventConsumer):
    def __init__(self, bus: KafkaBus, group_id: str, topics: list[str]) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            **bus._common(),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=60_000,
        )
        self._bootstrap = bus.bootstrap

    @property
    def raw(self) -> AIOKafkaConsumer:
        """The underlying aiokafka consumer (seek, lag, assignment)."""
        return self._consumer

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except KafkaConnectionError as exc:
            await self._consumer.stop()
            raise BusUnavailable(f"Kafka at {self._bootstrap} is unreachable: {exc}") from None

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 1000, max_records: int = 500) -> list[ReceivedRecord]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        out: list[ReceivedRecord] = []
        for tp, messages in batches.items():
            out.extend(
                ReceivedRecord(
                    tp.topic, tp.partition, m.offset, m.key, m.value or b"", tuple(m.headers)
                )
                for m in messages
            )
        return out

    async def commit(self) -> None:
        await self._consumer.commit()
