"""A media node SIGKILLed mid-call: its heartbeat expires, the call is closed as lost once, and
neither the events its spool delivers later nor Twilio's status callback reopen or contradict
the closing. Real ``parley media serve`` process, Kafka broker, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.consumer.lost_calls import LostCallSweeper
from functions.consumer.service import ConsumerService
from functions.voice.calls import apply_status
from media_nodes.simulator.caller import call
from shared.bus.durable import DurableBus
from shared.bus.kafka import KafkaBus
from shared.cache.redis import RedisCache
from shared.cache.registry import NodeRegistry
from shared.events import CallEnded, DispositionSet, Event
from tests.events.broker import KafkaBroker
from tests.events.conftest import running_consumer, started, wait_until
from tests.media.conftest import PATIENT, ROOT, clip, free_port

pytestmark = pytest.mark.integration


async def fetch(pool: Any, sql: str, *args: object) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return await cur.fetchall()


async def spooled_bytes(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    found = re.search(r"^parley_event_spool_bytes (\S+)$", text, re.M)
    assert found, "the node's /metrics has no spool series (its registry lacks the bus's)"
    return float(found[1])


async def test_a_call_of_a_killed_node_is_closed_once_and_stays_closed(
    database_url: str, db_pool: Any, redis_url: str, kafka_topic_prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "kafka").mkdir()
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    node_id = f"node-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")},
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_DATA_DIR": str(tmp_path / "node"),
        "PARLEY_KAFKA_BOOTSTRAP": broker.bootstrap,
        "PARLEY_KAFKA_TOPIC_PREFIX": kafka_topic_prefix,
        "PARLEY_REDIS_URL": redis_url,
        "PARLEY_NODE_ID": node_id,
        "PARLEY_NODE_REGISTRY_TTL_S": "2",
        "HF_HUB_OFFLINE": "1",
    }
    node = subprocess.Popen(  # noqa: ASYNC220 - a server process, started once
        [sys.executable, "-m", "media_nodes.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    registry = NodeRegistry(RedisCache(redis_url))
    sweeper = LostCallSweeper(db_pool, registry, node_grace_s=1.0)
    kafka = KafkaBus(broker.bootstrap, topic_prefix=kafka_topic_prefix)
    caller: asyncio.Task[Any] | None = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def ready() -> bool:
                assert node.poll() is None, "the media node exited"
                with contextlib.suppress(httpx.TransportError):
                    return (await http.get("/readyz")).status_code == 200
                return False

            await wait_until(ready, 180, every_s=0.5)
            assert node_id in {n.node_id for n in await registry.nodes()}
            url = f"ws://127.0.0.1:{port}/twilio/stream"
            steps = [clip("opening_hours"), clip("yes"), clip("opening_hours")]
            caller = asyncio.create_task(call(url, steps, **PATIENT))

            async def started_row() -> list[dict[str, Any]]:
                return await fetch(
                    db_pool,
                    "SELECT call_id, twilio_call_sid FROM calls WHERE node_id = %s",
                    node_id,
                )

            async with started(kafka), running_consumer(ConsumerService(kafka, db_pool)):
                await wait_until(lambda: _nonempty(started_row()), 120, every_s=0.3)
            [row] = await started_row()
            call_id = row["call_id"]
            broker.stop(kill=True)  # what the node publishes from now on waits in its spool
            await wait_until(lambda: _positive(spooled_bytes(http)), 120, every_s=0.3)
            node.send_signal(signal.SIGKILL)  # mid-call: no call.ended, no registry removal
            node.wait()
        stored_at_kill = await _count(db_pool, call_id)

        async def closed() -> bool:
            return any(c == call_id for c, _ in await sweeper.sweep())

        await wait_until(closed, 60, every_s=0.5)  # once the 2 s heartbeat TTL has passed
        assert await sweeper.sweep() == []  # closed once
        [lost] = await fetch(db_pool, "SELECT * FROM calls WHERE call_id = %s", call_id)
        assert lost["end_reason"] == "media_node_lost" and lost["status"] == "completed"
        assert lost["disposition"] == "call_lost" and lost["lost_at"] is not None
        assert lost["ended_at"] is not None and lost["duration_ms"] is not None

        # The node's spool delivers the rest (at least one event: it held bytes at the kill),
        # and a late real disposition and ending arrive after it.
        broker.start()
        spool = DurableBus(KafkaBus(broker.bootstrap, topic_prefix=kafka_topic_prefix),
                           tmp_path / "node" / "spool")  # fmt: skip
        await spool.start()
        await spool.flush(60)
        await spool.stop()
        async with started(kafka):
            for seq, payload in ((10_000, DispositionSet(disposition="resolved", summary="x")),
                                 (10_001, CallEnded(reason="hangup", duration_ms=1))):  # fmt: skip
                await kafka.publish(Event(tenant_id=lost["tenant_id"], call_id=call_id, seq=seq,
                                          payload=payload))  # fmt: skip
            service = ConsumerService(kafka, db_pool)
            async with running_consumer(service):
                await wait_until(
                    lambda: _more(_count(db_pool, call_id), stored_at_kill + 3), 90, every_s=0.3
                )
        async with db_pool.connection() as conn:  # Twilio's completed callback, later still
            applied = await apply_status(
                conn,
                call_sid=row["twilio_call_sid"],
                status="completed",
                sequence_number=9,
                at=None,
                duration_ms=99_000,
            )
        assert applied.known and not applied.changed
        [after] = await fetch(db_pool, "SELECT * FROM calls WHERE call_id = %s", call_id)
        for column in ("end_reason", "status", "disposition", "ended_at", "duration_ms", "lost_at"):
            assert after[column] == lost[column], column
        types = await fetch(
            db_pool, "SELECT type FROM call_events WHERE call_id = %s ORDER BY seq", call_id
        )
        assert types[-1]["type"] == "call.ended"  # the late ending is stored, not applied
        # The closing asked for the call's analysis; the late ending asked for none more.
        requests = await fetch(
            db_pool, "SELECT reason FROM call_analysis_requests WHERE call_id = %s", call_id
        )
        assert requests == [{"reason": "ended"}]
    finally:
        if caller is not None:
            caller.cancel()
            with contextlib.suppress(BaseException):
                await caller
        if node.poll() is None:
            node.kill()
            node.wait()
        broker.stop(kill=True)


async def _nonempty(rows: Any) -> bool:
    return bool(await rows)


async def _positive(value: Any) -> bool:
    return bool(await value > 0)


async def _more(value: Any, than: int) -> bool:
    return bool(await value >= than)


async def _count(pool: Any, call_id: str) -> int:
    rows = await fetch(pool, "SELECT count(*) AS n FROM call_events WHERE call_id = %s", call_id)
    return int(rows[0]["n"])
