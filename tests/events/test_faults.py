"""Faults from the outside, against the real broker and database: a record the database refuses
for any reason is set aside with its reason and delays only itself; a database that goes away is
waited for and nothing is lost; dead letters are written once however many groups consume."""

from __future__ import annotations

import asyncio
import os
import random
import string
import subprocess
import sys
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import PoolTimeout

from functions.consumer.dead_letters import parse_dead_letter
from functions.consumer.processor import Fault, classify
from functions.consumer.service import ConsumerService
from shared.bus import call_events_topic, dead_letter_topic
from shared.bus.kafka import KafkaBus
from shared.db import create_pool
from shared.events import CallStarted, Event, TurnUser
from tests.events.broker import free_port
from tests.events.conftest import (
    call_events,
    count_events,
    new_call_id,
    read_topic,
    running_consumer,
    started,
    wait_for_events,
    wait_until,
)
from tests.events.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "functions.consumer.cli"]


async def fetch(pool: Any, sql: str, *args: object) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return await cur.fetchall()


def words(n: int, rng: random.Random) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(n))


async def dead_letters(bootstrap: str, prefix: str, expected: int) -> list[dict[str, Any]]:
    records = await read_topic(bootstrap, dead_letter_topic(prefix), expected)
    return [parse_dead_letter(r.value) for r in records]


async def test_an_oversized_turn_is_set_aside_and_the_calls_behind_it_are_stored(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any
) -> None:
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=1)
    big_call, later = new_call_id(), [new_call_id() for _ in range(3)]
    big = Event(
        tenant_id="t1",
        call_id=big_call,
        seq=1,
        payload=TurnUser(turn_index=0, text="TEXT", start_ms=0, end_ms=1),
    )
    # ~800 KB of words, built as JSON: the model itself no longer accepts a turn this long.
    big_json = big.model_dump_json().replace('"TEXT"', f'"{words(88_000, random.Random(1))}"')
    topic = call_events_topic(kafka_topic_prefix)
    async with started(kafka):
        start = CallStarted(agent_id="a")
        await kafka.publish(Event(tenant_id="t1", call_id=big_call, seq=0, payload=start))
        # Raw, as a producer that predates the schema's bound would have sent it.
        await kafka.publish_raw(topic, big_call.encode(), big_json.encode())
        for call_id in later:
            for event in call_events(call_id, 8):
                await kafka.publish(event)
        service = ConsumerService(kafka, db_pool, group_id="g", retry_backoff_s=0.2)
        async with running_consumer(service):
            await wait_for_events(db_pool, later, 24, timeout_s=60)
        dead = await dead_letters(kafka_bootstrap, kafka_topic_prefix, 1)
    assert await count_events(db_pool, [big_call]) == 1  # its call.started is stored
    assert len(dead) == 1 and str(big.event_id) in dead[0]["value"]
    assert "10000 characters" in str(dead[0]["reason"]), dead[0]["reason"]


async def test_a_transcript_larger_than_the_search_column_is_stored_whole(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any
) -> None:
    """120 turns of 1,000 distinct words each: more than a tsvector can hold. Every turn is
    stored; the search column covers the transcript's documented prefix."""
    rng = random.Random(7)
    call_id = new_call_id()
    turns = [words(1000, rng) for _ in range(120)]
    events = [Event(tenant_id="t1", call_id=call_id, seq=0, payload=CallStarted(agent_id="a"))] + [
        Event(
            tenant_id="t1",
            call_id=call_id,
            seq=i + 1,
            payload=TurnUser(turn_index=i, text=t, start_ms=i * 10, end_ms=i * 10 + 5),
        )
        for i, t in enumerate(turns)
    ]
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=1)
    async with started(kafka):
        for event in events:
            await kafka.publish(event)
        service = ConsumerService(kafka, db_pool, group_id="g", batch_size=40)
        async with running_consumer(service):
            await wait_for_events(db_pool, [call_id], len(events), timeout_s=90)
            await wait_until(lambda: service.stats.received >= len(events), 30)
    assert service.stats.dead_lettered == 0
    rows = await fetch(
        db_pool,
        "SELECT count(*) AS n, sum(length(text)) AS chars FROM call_turns WHERE call_id = %s",
        call_id,
    )
    assert rows[0]["n"] == 120 and rows[0]["chars"] == sum(len(t) for t in turns)
    first_word = turns[0].split()[0]
    found = await fetch(
        db_pool,
        "SELECT call_id FROM calls WHERE call_id = %s AND transcript @@ plainto_tsquery("
        "'english', %s)",
        call_id,
        first_word,
    )
    assert found == [{"call_id": call_id}]


async def test_a_violated_constraint_is_set_aside_with_its_sqlstate(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any
) -> None:
    """Two calls claiming one Twilio call SID: valid events, refused by a unique constraint."""
    first, second, later = new_call_id(), new_call_id(), new_call_id()
    sid = f"CA{first}"
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=2)
    async with started(kafka):
        for call_id in (first, second):
            start = CallStarted(agent_id="a", twilio_call_sid=sid)
            await kafka.publish(Event(tenant_id="t1", call_id=call_id, seq=0, payload=start))
            for event in call_events(call_id, 6)[1:]:
                await kafka.publish(event)
        for event in call_events(later, 8):
            await kafka.publish(event)
        service = ConsumerService(kafka, db_pool, group_id="g", retry_backoff_s=0.2)
        async with running_consumer(service):
            await wait_for_events(db_pool, [first, second, later], 6 + 5 + 8, timeout_s=60)
        dead = await dead_letters(kafka_bootstrap, kafka_topic_prefix, 1)
    assert len(dead) == 1 and dead[0]["kind"] == "rejected"
    assert "23505" in str(dead[0]["reason"]) and "call.started" in str(dead[0]["reason"])
    rows = await fetch(db_pool, "SELECT count(*) AS n FROM calls WHERE twilio_call_sid = %s", sid)
    assert rows[0]["n"] == 1


async def test_a_statement_timeout_sets_aside_only_the_blocked_record(
    kafka_bootstrap: str, kafka_topic_prefix: str, database_url: str, db_pool: Any
) -> None:
    """A lock the test holds on one call's row makes that call's turn time out (57014); the
    other calls in the same batch and behind it are stored."""
    blocked, others = new_call_id(), [new_call_id() for _ in range(3)]
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=1)
    timeout_url = database_url + "?options=-c%20statement_timeout%3D1000"
    pool = await create_pool(timeout_url, max_size=4)
    lock = await psycopg.AsyncConnection.connect(database_url)
    try:
        async with started(kafka):
            start = CallStarted(agent_id="a")
            await kafka.publish(Event(tenant_id="t1", call_id=blocked, seq=0, payload=start))
            service = ConsumerService(kafka, pool, group_id="g", retry_backoff_s=0.2)
            async with running_consumer(service):
                await wait_for_events(db_pool, [blocked], 1)
                await lock.execute("SELECT 1 FROM calls WHERE call_id = %s FOR UPDATE", (blocked,))
                turn = TurnUser(turn_index=0, text="hello", start_ms=0, end_ms=1)
                await kafka.publish(Event(tenant_id="t1", call_id=blocked, seq=1, payload=turn))
                for call_id in others:
                    for event in call_events(call_id, 8):
                        await kafka.publish(event)
                await wait_for_events(db_pool, others, 24, timeout_s=60)
            dead = await dead_letters(kafka_bootstrap, kafka_topic_prefix, 1)
    finally:
        await lock.close()
        await pool.close()
    assert len(dead) == 1 and dead[0]["kind"] == "rejected"
    assert "57014" in str(dead[0]["reason"]), dead[0]["reason"]
    assert "turn.user" in str(dead[0]["reason"])


async def test_a_database_that_goes_away_mid_stream_loses_nothing(
    kafka_bootstrap: str, kafka_topic_prefix: str, database_url: str, db_pool: Any
) -> None:
    proxy = TcpProxy(int(database_url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    pool = await create_pool(proxy.url(database_url), max_size=4)
    call_ids = [new_call_id() for _ in range(20)]
    events = [e for c in call_ids for e in call_events(c, 100)]
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=3)
    try:
        async with started(kafka):
            await asyncio.gather(*(kafka.publish(e) for e in events))
            service = ConsumerService(kafka, pool, group_id="g", batch_size=50, retry_backoff_s=0.2)
            async with running_consumer(service):
                await wait_for_events(db_pool, call_ids, 300)
                await proxy.cut()
                at_cut = await count_events(db_pool, call_ids)
                await asyncio.sleep(3)
                assert await count_events(db_pool, call_ids) == at_cut  # nothing gets through
                await proxy.start()
                await wait_for_events(db_pool, call_ids, len(events), timeout_s=90)
                await asyncio.sleep(0.5)
    finally:
        await proxy.cut()
        await pool.close()
    assert at_cut < len(events)
    assert await count_events(db_pool, call_ids) == len(events)
    assert service.stats.dead_lettered == 0


async def test_two_consumer_groups_write_each_dead_letter_once(
    kafka_bootstrap: str, kafka_topic_prefix: str, db_pool: Any
) -> None:
    call_id = new_call_id()
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=1)
    topic = call_events_topic(kafka_topic_prefix)
    good = call_events(call_id, 6)
    async with started(kafka):
        await kafka.publish_raw(topic, call_id.encode(), b"{not json")
        for event in good:
            await kafka.publish(event)
        one = ConsumerService(kafka, db_pool, group_id="projector")
        two = ConsumerService(kafka, db_pool, group_id="analytics")
        async with running_consumer(one), running_consumer(two):
            await wait_until(lambda: one.stats.received >= 7 and two.stats.received >= 7, 60)
        records = await read_topic(kafka_bootstrap, dead_letter_topic(kafka_topic_prefix), 1)
    assert len(records) == 1, [parse_dead_letter(r.value)["source"] for r in records]
    assert await count_events(db_pool, [call_id]) == len(good)


async def test_a_consumer_started_while_the_database_is_down_waits_for_it(
    kafka_bootstrap: str, kafka_topic_prefix: str, database_url: str, db_pool: Any
) -> None:
    proxy = TcpProxy(int(database_url.rsplit(":", 1)[1].split("/")[0]))
    health_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env |= {
        "PARLEY_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PARLEY_KAFKA_TOPIC_PREFIX": kafka_topic_prefix,
        "PARLEY_DATABASE_URL": proxy.url(database_url),
    }
    call_ids = [new_call_id() for _ in range(3)]
    events = [e for c in call_ids for e in call_events(c, 10)]
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=1)
    async with started(kafka):
        for event in events:
            await kafka.publish(event)
    consumer = await asyncio.create_subprocess_exec(
        *CLI, "consume", "--health-port", str(health_port),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{health_port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:

            async def answers(status: int) -> bool:
                try:
                    return (await http.get("/readyz")).status_code == status
                except httpx.TransportError:
                    return False

            await wait_until(lambda: answers(503), 60, every_s=0.2)
            assert (await http.get("/healthz")).status_code == 200
            # Longer than the pool's own start timeout: the process must still be there.
            await asyncio.sleep(12)
            assert consumer.returncode is None
            assert await answers(503)
            await proxy.start()
            await wait_for_events(db_pool, call_ids, len(events), timeout_s=90)
            await wait_until(lambda: answers(200), 30, every_s=0.2)
    finally:
        if consumer.returncode is None:
            consumer.terminate()
        _, err = await asyncio.wait_for(consumer.communicate(), 30)
        await proxy.cut()
    assert consumer.returncode == 0, err.decode()[-3000:]
    assert "Traceback" not in err.decode(), err.decode()[-3000:]
    assert "is unavailable" in err.decode() and "not ready, retrying" in err.decode()


ORPHAN_TURN = (
    "INSERT INTO call_turns (call_id, speaker, turn_index, text, start_ms, end_ms)"
    " VALUES ('no-such-call', 'caller', 0, 'x', 0, 0)"
)


async def test_real_database_errors_are_classified_by_sqlstate(database_url: str) -> None:
    """Errors PostgreSQL really raises, whatever psycopg's exception class for them."""

    async def error_of(sql: str, conn: psycopg.AsyncConnection[Any]) -> BaseException:
        try:
            async with conn.transaction():
                await conn.execute(sql)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            return exc
        raise AssertionError(f"{sql} did not fail")

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        too_long = await error_of(
            "SELECT to_tsvector('simple', string_agg(md5(i::text), ' '))"
            " FROM generate_series(1, 40000) i",
            conn,
        )
        assert isinstance(too_long, psycopg.OperationalError) and too_long.sqlstate == "54000"
        assert classify(too_long) is Fault.REJECTED
        for sql, sqlstate in (
            ("SELECT 'x'::int", "22P02"),
            ("SELECT * FROM no_such_table", "42P01"),
            (ORPHAN_TURN, "23503"),
            ("SET LOCAL statement_timeout = 50; SELECT pg_sleep(1)", "57014"),
        ):
            exc = await error_of(sql, conn)
            assert getattr(exc, "sqlstate", None) == sqlstate, (sql, exc)
            assert classify(exc) is Fault.REJECTED, sql
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        shutdown = await error_of("SELECT 1", conn)
        assert classify(shutdown) is Fault.UNAVAILABLE, shutdown
    assert classify(PoolTimeout("no connection")) is Fault.UNAVAILABLE
    refused = await create_pool_error("postgresql://postgres@127.0.0.1:1/x")
    assert classify(refused) is Fault.UNAVAILABLE, refused


async def create_pool_error(url: str) -> BaseException:
    try:
        await psycopg.AsyncConnection.connect(url, connect_timeout=2)
    except psycopg.Error as exc:
        return exc
    raise AssertionError("connected to a closed port")
