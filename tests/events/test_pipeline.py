"""Media node -> Kafka -> consumer -> PostgreSQL, against the real broker and database."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from functions.consumer.dead_letters import parse_dead_letter
from functions.consumer.metrics import ConsumerMetrics
from functions.consumer.processor import BatchOutcome
from functions.consumer.replay import replay
from functions.consumer.service import ConsumerService
from shared.bus import call_events_topic, dead_letter_topic
from shared.bus.durable import DurableBus
from shared.bus.kafka import KafkaBus
from shared.events import Event, TurnUser
from shared.privacy import TenantPrivacy
from tests.events.conftest import (
    assert_first_seen_in_order,
    call_events,
    count_events,
    new_call_id,
    read_topic,
    running_consumer,
    started,
    wait_for_events,
)

pytestmark = pytest.mark.integration


async def fetch(pool: Any, sql: str, *args: object) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return await cur.fetchall()


async def test_10000_events_from_100_concurrent_calls_land_exactly_once(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any, tmp_path: Path
) -> None:
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=6)
    producer = DurableBus(kafka, tmp_path / "spool")
    calls = {new_call_id(): None for _ in range(100)}
    call_ids = list(calls)
    stories = {c: call_events(c, 100) for c in call_ids}

    async def simulated_call(call_id: str) -> None:
        rng = random.Random(call_id)
        for event in stories[call_id]:
            await producer.publish(event)
            if rng.random() < 0.2:
                await asyncio.sleep(rng.random() / 100)  # the call goes on between turns

    lags: list[int] = []

    async def note_lag(_: BatchOutcome) -> None:
        lags.append(sum(service.lag.values()))

    service = ConsumerService(kafka, db_pool, group_id="projector", after_db_commit=note_lag)
    await producer.start()
    async with started(kafka), running_consumer(service):
        await asyncio.gather(*(simulated_call(c) for c in call_ids))
        await producer.flush(60)
        await wait_for_events(db_pool, call_ids, 10_000)
        await asyncio.sleep(0.5)  # anything extra would land now
    await producer.stop()

    rows = await fetch(
        db_pool,
        "SELECT call_id, count(*) AS n, count(DISTINCT seq) AS seqs, max(seq) AS top"
        " FROM call_events WHERE call_id = ANY(%s) GROUP BY call_id",
        call_ids,
    )
    assert len(rows) == 100
    assert all(r["n"] == 100 and r["seqs"] == 100 and r["top"] == 99 for r in rows)
    ids = await fetch(db_pool, "SELECT event_id FROM call_events WHERE call_id = ANY(%s)", call_ids)
    assert {r["event_id"] for r in ids} == {e.event_id for s in stories.values() for e in s}
    calls_rows = await fetch(
        db_pool,
        "SELECT status, disposition, last_seq, intents FROM calls WHERE call_id = ANY(%s)",
        call_ids,
    )
    assert all(
        c["status"] == "completed"
        and c["last_seq"] == 99
        and sorted(c["intents"]) == ["i0", "i1", "i2"]
        for c in calls_rows
    )
    records = await read_topic(kafka_bootstrap, call_events_topic(kafka_topic_prefix), 10_000)
    assert_first_seen_in_order(records)
    assert service.stats.applied == 10_000 and service.stats.dead_lettered == 0
    assert lags and all(v == 0 for v in service.lag.values())  # caught up at the end


async def test_consumer_lag_is_a_metric(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any
) -> None:
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=1)
    call_id = new_call_id()
    seen: list[int] = []

    async def note_lag(_: BatchOutcome) -> None:
        seen.append(service.lag.get(0, -1))

    async with started(kafka):
        for event in call_events(call_id, 50):
            await kafka.publish(event)
        registry = CollectorRegistry()  # the process's, as shared/metrics.py hands it in
        service = ConsumerService(
            kafka,
            db_pool,
            group_id="g",
            batch_size=10,
            after_db_commit=note_lag,
            metrics=ConsumerMetrics(registry),
        )
        async with running_consumer(service):
            await wait_for_events(db_pool, [call_id], 50)
            await asyncio.sleep(0.5)
    labels = {"topic": call_events_topic(kafka_topic_prefix), "partition": "0"}
    assert seen[1] >= 30  # measured after the first batch of 10 out of 50
    assert service.lag == {0: 0}
    assert registry.get_sample_value("parley_consumer_lag", labels) == 0


class Crash(Exception):
    """The consumer dies after the database commit, before the offset commit."""


async def test_a_crash_between_db_commit_and_offset_commit_duplicates_nothing(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any
) -> None:
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=2)
    call_ids = [new_call_id() for _ in range(5)]
    events = [e for c in call_ids for e in call_events(c, 40)]
    committed_first: list[int] = []

    async def crash(outcome: BatchOutcome) -> None:
        committed_first.append(outcome.applied)
        raise Crash

    async with started(kafka):
        for event in events:
            await kafka.publish(event)
        first = ConsumerService(kafka, db_pool, group_id="g", batch_size=50, after_db_commit=crash)
        with pytest.raises(Crash):
            await first.run(asyncio.Event())
        assert committed_first[0] > 0
        assert await count_events(db_pool, call_ids) == committed_first[0]  # rows are there
        second = ConsumerService(kafka, db_pool, group_id="g", batch_size=50)
        async with running_consumer(second):
            await wait_for_events(db_pool, call_ids, len(events))
            await asyncio.sleep(0.5)
    # The crashed batch came again and was recognised, row for row.
    assert second.stats.duplicates == committed_first[0]
    assert second.stats.applied == len(events) - committed_first[0]
    assert await count_events(db_pool, call_ids) == len(events)
    intents = await fetch(db_pool, "SELECT intents FROM calls WHERE call_id = ANY(%s)", call_ids)
    assert all(sorted(r["intents"]) == ["i0", "i1", "i2"] for r in intents)


async def test_poison_events_reach_the_dlq_and_the_stream_keeps_flowing(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any
) -> None:
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=1)
    call_id = new_call_id()
    good = call_events(call_id, 8)
    topic = call_events_topic(kafka_topic_prefix)
    nul = Event(
        tenant_id="t1",
        call_id=call_id,
        seq=100,
        payload=TurnUser(turn_index=50, text="bad \x00 byte", start_ms=0, end_ms=1),
    )
    async with started(kafka):
        await kafka.publish(good[0])
        await kafka.publish_raw(topic, call_id.encode(), b"{not json")
        await kafka.publish_raw(topic, call_id.encode(), b'{"type": "call.started"}')
        await kafka.publish(nul)  # valid JSON and schema, refused by PostgreSQL
        for event in good[1:]:
            await kafka.publish(event)
        service = ConsumerService(kafka, db_pool, group_id="g")
        async with running_consumer(service):
            await wait_for_events(db_pool, [call_id], len(good))
        letters = await read_topic(kafka_bootstrap, dead_letter_topic(kafka_topic_prefix), 3)
    assert await count_events(db_pool, [call_id]) == len(good)
    dead = [parse_dead_letter(r.value) for r in letters]
    assert [d["kind"] for d in dead] == ["invalid", "invalid", "rejected"]
    assert "invalid event" in str(dead[0]["reason"])
    assert "tenant_id" in str(dead[1]["reason"])
    assert str(nul.event_id) in str(dead[2]["reason"]) and "\\u0000" in str(dead[2]["value"])
    assert dead[0]["value"] == "{not json"
    assert {d["source"]["topic"] for d in dead} == {topic}  # type: ignore[index]
    assert all(r.key == call_id.encode() for r in letters)
    assert service.stats.dead_lettered == 3


async def test_replay_rebuilds_deleted_rows_idempotently(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any
) -> None:
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=3)
    lost, kept = new_call_id(), new_call_id()
    since = datetime.now(UTC) - timedelta(seconds=5)
    async with started(kafka):
        for event in call_events(lost, 12) + call_events(kept, 12):
            await kafka.publish(event)
        service = ConsumerService(kafka, db_pool, group_id="g")
        async with running_consumer(service):
            await wait_for_events(db_pool, [lost, kept], 24)
    async with db_pool.connection() as conn:
        await conn.execute("DELETE FROM call_events WHERE call_id = %s", (lost,))
        await conn.execute("DELETE FROM calls WHERE call_id = %s", (lost,))

    report = await replay(kafka, db_pool, since=since, call_id=lost)
    assert (report.matched, report.applied, report.duplicates) == (12, 12, 0)
    [call] = await fetch(db_pool, "SELECT status, disposition FROM calls WHERE call_id = %s", lost)
    assert call == {"status": "completed", "disposition": "resolved"}
    again = await replay(kafka, db_pool, since=since)
    assert (again.matched, again.applied, again.duplicates) == (24, 0, 24)
    later = await replay(kafka, db_pool, since=datetime.now(UTC) + timedelta(minutes=1))
    assert later.read == 0
    assert await count_events(db_pool, [lost, kept]) == 24
    # The aggregate rollup saw the deletion and the rebuilt row once, and nothing of the
    # replayed duplicates.
    [rolled] = await fetch(
        db_pool,
        "SELECT sum(calls) AS calls, sum(duration_sum) AS duration FROM (SELECT calls, "
        "duration_sum FROM call_aggregate_daily UNION ALL SELECT calls, duration_sum "
        "FROM call_aggregate_deltas) r",
    )
    [exact] = await fetch(
        db_pool, "SELECT count(*) AS calls, sum(duration_ms) AS duration FROM calls"
    )
    assert rolled == exact


async def test_redacting_tenants_never_have_raw_text_persisted(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any, tmp_path: Path
) -> None:
    tenant = f"t-{new_call_id()}"
    async with db_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO tenants (tenant_id, name, settings) VALUES (%s, 'x', %s)",
            (tenant, '{"redact_pii": true}'),
        )
    call_id = new_call_id()
    said = "my card is four one one one one one one one one one one one one one one one"
    turn = Event(
        tenant_id=tenant,
        call_id=call_id,
        seq=1,
        payload=TurnUser(turn_index=0, text=said, start_ms=0, end_ms=1),
    )
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=1)
    privacy = TenantPrivacy(db_pool)
    # Media node side: redacted before the spool file and Kafka see it.
    producer = DurableBus(kafka, tmp_path / "spool", redact=privacy.apply)
    await producer.start()
    await producer.publish(turn)
    await producer.flush(30)
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "spool").glob("*.spool"))
    await producer.stop()
    assert b"[CARD]" in spooled and b"four one one" not in spooled
    # Consumer side: a producer that did not redact is caught before the database.
    async with started(kafka):
        raw = Event(
            tenant_id=tenant,
            call_id=call_id,
            seq=2,
            payload=TurnUser(turn_index=1, text="ssn 123-45-6789", start_ms=2, end_ms=3),
        )
        await kafka.publish(raw)
        async with running_consumer(ConsumerService(kafka, db_pool, group_id="g")):
            await wait_for_events(db_pool, [call_id], 2)
    turns = await fetch(
        db_pool, "SELECT text FROM call_turns WHERE call_id = %s ORDER BY turn_index", call_id
    )
    assert [t["text"] for t in turns] == ["my card is [CARD]", "ssn [SSN]"]
    stored = await fetch(
        db_pool, "SELECT payload::text AS p FROM call_events WHERE call_id = %s", call_id
    )
    assert all(
        "4111" not in s["p"] and "123-45" not in s["p"] and "four one" not in s["p"] for s in stored
    )


async def test_embedded_mode_redacts_like_the_consumer(db_pool: Any) -> None:
    """The in-process bus carries raw events; the embedded projector must store what the
    deployed consumer would: a redacting tenant's text masked."""
    from media_nodes.app import start_embedded_projector
    from shared.bus.memory import InProcessBus

    tenant = f"t-{new_call_id()}"
    async with db_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO tenants (tenant_id, name, settings) VALUES (%s, 'x', %s)",
            (tenant, '{"redact_pii": true}'),
        )
    call_id = new_call_id()
    bus = InProcessBus(f"embedded-{call_id}")
    await bus.start()
    projector = start_embedded_projector(bus, db_pool)
    try:
        await bus.publish(
            Event(
                tenant_id=tenant,
                call_id=call_id,
                seq=1,
                payload=TurnUser(turn_index=0, text="ssn 123-45-6789", start_ms=0, end_ms=1),
            )
        )
        await wait_for_events(db_pool, [call_id], 1)
    finally:
        await projector.close()
        await bus.stop()
    turns = await fetch(db_pool, "SELECT text FROM call_turns WHERE call_id = %s", call_id)
    assert [t["text"] for t in turns] == ["ssn [SSN]"]
    stored = await fetch(
        db_pool, "SELECT payload::text AS p FROM call_events WHERE call_id = %s", call_id
    )
    assert stored and all("123-45" not in s["p"] for s in stored)
