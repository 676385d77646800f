"""A whole call through the functions and a real media node, read back through analytics:

voice webhook (Lambda handler) -> TwiML <Connect><Stream> with a signed session token -> the
simulated Twilio caller streams to that node -> the node's events are projected into PostgreSQL
-> Twilio's status callback -> GET /v1/calls/{id} shows the transcript and the disposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import pytest
import websockets
from psycopg.types.json import Jsonb

from functions.analytics.app import handler as analytics_handler
from functions.common.runtime import Runtime
from functions.voice.app import handler as voice_handler
from media_nodes.simulator.caller import SimulatedCaller
from shared.agents.loader import inline_knowledge, load_agent_file
from shared.cache import NodeInfo, NodeRegistry
from shared.cache.redis import RedisCache
from shared.tokens import sign
from tests.functions.conftest import (
    Reply,
    Tenant,
    api_event,
    call_sid,
    inbound_form,
    invoke,
    make_agent,
    phone,
    voice_event,
)
from tests.media.conftest import PATIENT, ROOT, NodeFactory, clip, models, start_node  # noqa: F401

T = TypeVar("T")


@pytest.fixture
def lambda_thread(rt: Runtime) -> Iterator[Callable[..., Any]]:
    """Invoke handlers from an async test: on one worker thread with its own event loop, as a
    Lambda container would (Mangum runs each invocation on that thread's loop)."""
    pool = ThreadPoolExecutor(max_workers=1)

    async def run(func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, func, *args)

    yield run

    def close() -> None:
        asyncio.get_event_loop().run_until_complete(rt.close())

    pool.submit(close).result(timeout=30)
    pool.shutdown()


async def test_a_simulated_call_shows_up_through_the_analytics_api(
    rt: Runtime,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    heartbeat: Any,
    start_node: NodeFactory,  # noqa: F811
    lambda_thread: Callable[..., Any],
) -> None:
    number = make_agent(sql, tenant.tenant_id, number=phone())
    sid = call_sid()
    secret = rt.settings.session_token_secret.get_secret_value()
    async with start_node(project=True, session_token_secret=secret, node_id="e2e") as running:
        base = running.url.removesuffix("/twilio/stream")
        await asyncio.to_thread(heartbeat, NodeInfo("e2e", base, capacity=2, active_calls=0))

        answer: Reply = await lambda_thread(
            invoke, voice_handler, voice_event(inbound_form(sid, number))
        )
        assert answer.status == 200, answer.body
        stream = ET.fromstring(answer.body).find("./Connect/Stream")
        assert stream is not None and stream.get("url") == running.url
        parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}

        caller = SimulatedCaller(running.url, parameters=parameters, **PATIENT)
        caller.result.call_sid = sid
        await caller.run([clip("order_status"), clip("human")])
        call_id = parameters["call_id"]
        await running.wait_call_ended(call_id)
        await asyncio.sleep(0.5)  # the embedded projector commits in small batches

    completed = inbound_form(sid, number, CallStatus="completed", CallDuration="20")
    status = await lambda_thread(
        invoke, voice_handler, voice_event(completed, path="/twilio/status")
    )
    assert status.status == 204

    reply: Reply = await lambda_thread(
        invoke,
        analytics_handler,
        api_event("analytics.get-v1-calls-call_id.json", tenant, path=f"/v1/calls/{call_id}"),
    )
    assert reply.status == 200, reply.body
    call = reply.json()
    assert call["twilio_call_sid"] == sid and call["node_id"] == "e2e"
    assert call["agent_id"] == "acme-shop" and call["status"] == "completed"
    assert call["disposition"] == "escalated_to_human", call
    speakers = [t["speaker"] for t in call["turns"]]
    assert speakers[0] == "agent" and "caller" in speakers
    caller_text = " ".join(t["text"] for t in call["turns"] if t["speaker"] == "caller").lower()
    assert "order" in caller_text and "person" in caller_text
    assert "order_status" in call["intents"]
    assert call["latency"] and [h["status"] for h in call["status_history"]] == ["completed"]


async def test_a_call_flows_through_kafka_and_the_consumer_into_the_analytics_api(
    rt: Runtime,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    heartbeat: Any,
    start_node: NodeFactory,  # noqa: F811
    lambda_thread: Callable[..., Any],
    kafka_bootstrap: str,
    kafka_topic_prefix: str,
    tmp_path: Any,
) -> None:
    """Production's path: media node -> durable producer -> real Kafka -> consumer -> PostgreSQL
    -> analytics API, with the tenant's PII redaction on (the caller's order number is a number
    the redactor keeps; the call must still arrive whole)."""
    from functions.consumer.service import ConsumerService
    from shared.bus.durable import DurableBus
    from shared.bus.kafka import KafkaBus
    from shared.db import create_pool
    from shared.privacy.tenants import TenantPrivacy

    sql.execute(
        "UPDATE tenants SET settings = settings || '{\"redact_pii\": true}' WHERE tenant_id = %s",
        (tenant.tenant_id,),
    )
    number = make_agent(sql, tenant.tenant_id, number=phone())
    pool = await create_pool(rt.settings.database_url, max_size=4)
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=2)
    producer = DurableBus(kafka, tmp_path / "spool", redact=TenantPrivacy(pool).apply)
    consumer_bus = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix)
    await consumer_bus.start()
    consumer = ConsumerService(consumer_bus, pool, group_id="e2e-projector")
    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(stop))
    sid = call_sid()
    secret = rt.settings.session_token_secret.get_secret_value()
    try:
        async with start_node(bus=producer, session_token_secret=secret, node_id="kafka") as node:
            base = node.url.removesuffix("/twilio/stream")
            await asyncio.to_thread(heartbeat, NodeInfo("kafka", base, capacity=2, active_calls=0))
            answer: Reply = await lambda_thread(
                invoke, voice_handler, voice_event(inbound_form(sid, number))
            )
            stream = ET.fromstring(answer.body).find("./Connect/Stream")
            assert stream is not None
            parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
            caller = SimulatedCaller(node.url, parameters=parameters, call_sid=sid, **PATIENT)
            await caller.run([clip("order_status"), clip("human")])
        call_id = parameters["call_id"]
        for _ in range(200):  # the consumer commits in batches
            row = sql.execute(
                "SELECT disposition FROM calls WHERE call_id = %s", (call_id,)
            ).fetchone()
            if row and row["disposition"]:
                break
            await asyncio.sleep(0.1)
        reply: Reply = await lambda_thread(
            invoke,
            analytics_handler,
            api_event("analytics.get-v1-calls-call_id.json", tenant, path=f"/v1/calls/{call_id}"),
        )
    finally:
        stop.set()
        await asyncio.wait_for(consuming, 30)
        await consumer_bus.stop()
        await pool.close()
    assert reply.status == 200, reply.body
    call = reply.json()
    assert call["node_id"] == "kafka" and call["disposition"] == "escalated_to_human"
    caller_text = " ".join(t["text"] for t in call["turns"] if t["speaker"] == "caller").lower()
    assert "order" in caller_text and "person" in caller_text
    assert "order_status" in call["intents"] and call["latency"]
    assert consumer.stats.applied > 0


async def stream_refused(url: str, parameters: dict[str, str], sid: str) -> int:
    """Start a stream as Twilio would; the close code the node answers with."""
    stream_sid = "MZ" + uuid.uuid4().hex
    async with websockets.connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "streamSid": stream_sid,
            "accountSid": "AC" + "0" * 32,
            "callSid": sid,
            "tracks": ["inbound"],
            "customParameters": parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await ws.send(json.dumps({"event": "start", "streamSid": stream_sid, "start": start}))

        async def until_closed() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for _ in ws:
                    pass

        await asyncio.wait_for(until_closed(), 10)
    assert ws.close_code is not None
    return int(ws.close_code)


def stored_call(sql: psycopg.Connection[Any], call_id: str) -> dict[str, Any]:
    """Everything stored about a call."""
    row = sql.execute("SELECT * FROM calls WHERE call_id = %s", (call_id,)).fetchone()
    turns = sql.execute(
        "SELECT * FROM call_turns WHERE call_id = %s ORDER BY speaker, turn_index", (call_id,)
    ).fetchall()
    events = sql.execute(
        "SELECT event_id FROM call_events WHERE call_id = %s ORDER BY seq", (call_id,)
    ).fetchall()
    return {"call": row, "turns": turns, "events": events}


async def test_a_replayed_webhook_cannot_rewrite_a_finished_call(
    rt: Runtime,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    heartbeat: Any,
    start_node: NodeFactory,  # noqa: F811
    lambda_thread: Callable[..., Any],
    redis_url: str,
    redis_prefix: str,
) -> None:
    """A call completes; its (validly signed) webhook is posted again. The replay gets a hang-up
    and no token, and neither the old token nor a fresh one for the call opens a stream, on the
    node that took the call or on another node sharing its Redis. The call is stored exactly as
    it was, with the agent version that answered it."""
    number = make_agent(sql, tenant.tenant_id, number=phone())
    acme = inline_knowledge(load_agent_file(ROOT / "examples" / "agents" / "acme-shop"))
    sql.execute(  # version 1 is the example shop, which talks with the caller
        "UPDATE agent_versions SET definition = %s WHERE tenant_id = %s AND agent_id = %s",
        (Jsonb(acme.model_dump(mode="json", exclude_defaults=True)), tenant.tenant_id, acme.id),
    )
    sid = call_sid()
    secret = rt.settings.session_token_secret.get_secret_value()
    webhook = voice_event(inbound_form(sid, number))

    def redis_registry() -> NodeRegistry:
        return NodeRegistry(RedisCache(redis_url, key_prefix=redis_prefix))

    async with start_node(
        project=True,
        agents_from_db=True,
        registry=redis_registry(),
        session_token_secret=secret,
        node_id="first",
    ) as running:
        base = running.url.removesuffix("/twilio/stream")
        await asyncio.to_thread(heartbeat, NodeInfo("first", base, capacity=2, active_calls=0))
        answer: Reply = await lambda_thread(invoke, voice_handler, webhook)
        stream = ET.fromstring(answer.body).find("./Connect/Stream")
        assert stream is not None, answer.body
        parameters = {
            p.get("name") or "": p.get("value") or "" for p in stream.findall("Parameter")
        }
        call_id = parameters["call_id"]
        caller = SimulatedCaller(running.url, parameters=parameters, call_sid=sid, **PATIENT)
        await caller.run([clip("order_status"), clip("human")])
        events = await running.wait_call_ended(call_id)
        await asyncio.sleep(0.5)  # the embedded projector commits in small batches
        completed = inbound_form(sid, number, CallStatus="completed", CallDuration="20")
        await lambda_thread(invoke, voice_handler, voice_event(completed, path="/twilio/status"))
        before = stored_call(sql, call_id)

        replay: Reply = await lambda_thread(invoke, voice_handler, webhook)
        assert replay.status == 200
        assert ET.fromstring(replay.body).find("./Connect") is None, replay.body
        assert ET.fromstring(replay.body).find("./Hangup") is not None
        assert "token" not in replay.body

        fresh = dict(
            parameters,
            token=sign(
                call_id,
                tenant.tenant_id,
                "acme-shop",
                300,
                secret=secret,
                call_sid=sid,
            ),
        )
        assert await stream_refused(running.url, parameters, sid) == 1008  # the old token
        assert await stream_refused(running.url, fresh, sid) == 1008  # a new one
        async with start_node(
            registry=redis_registry(), session_token_secret=secret, node_id="second"
        ) as other:
            assert await stream_refused(other.url, fresh, sid) == 1008
        assert running.dropped("second_stream") == 2
        await asyncio.sleep(0.5)
        after = stored_call(sql, call_id)

    assert after == before
    started = next(e.payload for e in events if e.type == "call.started")
    assert started.agent_version == 1  # type: ignore[union-attr]
    call = after["call"]
    assert call["agent_version"] == 1 and call["stream_sid"] == caller.result.stream_sid
    assert call["end_reason"] and call["duration_ms"] and call["status"] == "completed"
    caller_text = " ".join(t["text"] for t in after["turns"] if t["speaker"] == "caller")
    assert "order" in caller_text.lower()
