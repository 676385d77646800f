"""The bus: in-process semantics, and a real round trip through the Kafka broker."""

from __future__ import annotations

import asyncio

import pytest

from shared.bus import BusUnavailable, EventBus, InProcessBus, call_events_topic
from shared.bus.kafka import KafkaBus
from shared.events import CallEnded, Event, TurnUser


def turn(call: str, seq: int) -> Event:
    return Event(
        tenant_id="t1",
        call_id=call,
        seq=seq,
        payload=TurnUser(turn_index=seq, text=f"turn {seq}", start_ms=seq, end_ms=seq + 1),
    )


async def drain(bus: EventBus, group: str, expected: int, timeout_s: float = 30) -> list[Event]:
    consumer = bus.consumer(group)
    await consumer.start()
    got: list[Event] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(got) < expected:
                got.extend(r.event() for r in await consumer.poll(timeout_ms=500))
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


def assert_ordered_per_call(events: list[Event]) -> None:
    by_call: dict[str, list[int]] = {}
    for e in events:
        by_call.setdefault(e.call_id, []).append(e.seq)
    for call, seqs in by_call.items():
        assert seqs == sorted(seqs), f"{call} out of order: {seqs}"


async def test_in_process_bus_has_consumer_group_semantics() -> None:
    bus = InProcessBus()
    for seq in range(5):
        await bus.publish(turn("a", seq))
    first = await drain(bus, "g1", 5)
    assert [e.seq for e in first] == list(range(5))
    await bus.publish(turn("a", 5))
    # Same group resumes after its committed offset; a new group starts from the beginning.
    assert [e.seq for e in await drain(bus, "g1", 1)] == [5]
    assert len(await drain(bus, "g2", 6)) == 6


async def test_in_process_uncommitted_records_are_redelivered() -> None:
    bus = InProcessBus()
    await bus.publish(turn("a", 0))
    consumer = bus.consumer("g")
    await consumer.start()
    assert len(await consumer.poll(timeout_ms=100)) == 1
    await consumer.stop()  # no commit: as if the process died
    assert [e.seq for e in await drain(bus, "g", 1)] == [0]


async def test_in_process_retention_drops_only_what_every_group_committed() -> None:
    bus = InProcessBus(retain_records=3)
    topic = call_events_topic(bus.topic_prefix)
    slow = bus.consumer("slow")
    await slow.start()  # subscribed, nothing committed yet
    for seq in range(6):
        await bus.publish(turn("a", seq))
    assert len(await drain(bus, "fast", 6)) == 6
    assert len(bus.records(topic)) == 6, "the slow group has not consumed anything yet"

    batch = await slow.poll(timeout_ms=100, max_records=4)
    await slow.commit()
    assert [r.event().seq for r in batch] == [0, 1, 2, 3]
    kept = bus.records(topic)
    assert [r.event().seq for r in kept] == [3, 4, 5]  # the retention: 3 records
    assert [r.offset for r in kept] == [3, 4, 5]  # offsets never shift
    assert [r.event().seq for r in await slow.poll(timeout_ms=100)] == [4, 5]
    await slow.stop()
    # A group that starts after the trim begins at the earliest record kept.
    assert [e.seq for e in await drain(bus, "late", 3)] == [3, 4, 5]


@pytest.mark.integration
async def test_kafka_round_trip_with_committed_offsets(
    kafka_bootstrap: str, kafka_topic_prefix: str
) -> None:
    bus = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=3)
    await bus.start()
    try:
        events = [turn(f"call-{c}", s) for s in range(10) for c in range(6)]
        await asyncio.gather(*(bus.publish(e) for e in events[:30]))
        for e in events[30:]:
            await bus.publish(e)
        got = await drain(bus, "projector", len(events))
        assert {e.event_id for e in got} == {e.event_id for e in events}
        assert_ordered_per_call(got)
        # Committed: the same group sees only what comes next.
        late = Event(
            tenant_id="t1",
            call_id="call-0",
            seq=99,
            payload=CallEnded(reason="hangup", duration_ms=10),
        )
        await bus.publish(late)
        again = await drain(bus, "projector", 1)
        assert [e.event_id for e in again] == [late.event_id]
    finally:
        await bus.stop()


@pytest.mark.integration
async def test_kafka_topics_are_created_by_configuration(
    kafka_bootstrap: str, kafka_topic_prefix: str
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    bus = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=2)
    await bus.ensure_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    assert call_events_topic(kafka_topic_prefix) in topics
    assert f"{kafka_topic_prefix}.call-events.dlq" in topics


async def test_unreachable_kafka_is_named() -> None:
    bus = KafkaBus("127.0.0.1:1", topic_prefix="x", request_timeout_ms=2000)
    with pytest.raises(BusUnavailable, match=r"Kafka at 127\.0\.0\.1:1"):
        await bus.start()


def test_msk_iam_auth_uses_signed_oauthbearer_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.bus.kafka import MskIamTokenProvider
    from shared.settings import load_settings

    monkeypatch.setenv("PARLEY_KAFKA_BOOTSTRAP", "b-1.msk.example:9098")
    monkeypatch.setenv("PARLEY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PARLEY_KAFKA_SASL_MECHANISM", "AWS_MSK_IAM")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    options = KafkaBus.from_settings(load_settings()).client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    provider = options["sasl_oauth_token_provider"]
    assert isinstance(provider, MskIamTokenProvider)
    # The token is a real SigV4-presigned URL for kafka-cluster:Connect, base64url-encoded.
    import base64

    token = asyncio.run(provider.token())
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    assert url.startswith("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect")
    assert "X-Amz-Signature=" in url
