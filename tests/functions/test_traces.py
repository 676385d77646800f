"""One call, one trace, in a real Jaeger: voice webhook -> media node (call, turns, stages, the
LLM's streamed answer) -> Kafka (context in the record headers) ->
consumer -> its PostgreSQL write. The LLM is a real one (llama-cpp-python, SmolLM2)."""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

from functions.common.runtime import Runtime
from functions.voice.app import handler as voice_handler
from media_nodes.models import Models
from media_nodes.simulator.caller import Say, SimulatedCaller, call
from shared import tracing
from shared.cache import NodeInfo
from shared.settings import Settings
from tests.functions.conftest import (
    Reply,
    Tenant,
    call_sid,
    inbound_form,
    invoke,
    make_agent,
    phone,
    voice_event,
)
from tests.functions.test_end_to_end import lambda_thread  # noqa: F401
from tests.jaeger import OTLP_HTTP, parent_of
from tests.jaeger import read_trace as read_jaeger_trace
from tests.media.conftest import PATIENT, NodeFactory, clip, models, start_node  # noqa: F401
from tests.media.test_speculative_reply import OrdersApi, orders_api  # noqa: F401

STAGES = {"vad end of turn", "asr", "dialogue first text", "tts first audio", "playout first frame"}


@pytest.fixture(scope="session")
def jaeger(jaeger_server: str) -> Iterator[str]:
    """The session's Jaeger, with this process exporting to it."""
    assert tracing.configure(Settings(otlp_endpoint=OTLP_HTTP), "parley-test")
    yield jaeger_server
    tracing.flush()


def read_trace(query: str, trace_id: str, want: Callable[[list[dict[str, Any]]], bool]) -> Any:
    found = read_jaeger_trace(query, trace_id, lambda t: want(t["spans"]), flush=tracing.flush)
    return found["spans"]


async def test_a_call_is_one_trace_from_the_webhook_to_the_database(
    jaeger: str,
    rt: Runtime,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    heartbeat: Any,
    start_node: NodeFactory,  # noqa: F811
    models: Models,  # noqa: F811
    lambda_thread: Callable[..., Any],  # noqa: F811
    kafka_bootstrap: str,
    kafka_topic_prefix: str,
    llm_server: str,
    tmp_path: Any,
) -> None:
    from functions.consumer.service import ConsumerService
    from shared.bus.durable import DurableBus
    from shared.bus.kafka import KafkaBus
    from shared.db import create_pool

    number = make_agent(sql, tenant.tenant_id, number=phone())
    pool = await create_pool(rt.settings.database_url, max_size=4)
    producer = DurableBus(
        KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=2),
        tmp_path / "spool",
    )
    consumer_bus = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix)
    await consumer_bus.start()
    consumer = ConsumerService(consumer_bus, pool, group_id="traces")
    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(stop))
    sid = call_sid()
    secret = rt.settings.session_token_secret.get_secret_value()
    # No recorded clip asks what the example agent's knowledge answers: the node's own voice
    # asks it (Piper), and Whisper hears it like any caller.
    voice = models.voice
    spoken = [chunk async for chunk in voice.speak("Do you ship to Canada?", 8000, cache=False)]
    # (Piper starts speaking at once: a little silence keeps the first word whole.)
    silence = np.zeros(3200, dtype=np.int16)
    question = Say(np.concatenate([silence, *spoken, silence]), label="knowledge question")
    try:
        async with start_node(
            bus=producer,
            session_token_secret=secret,
            node_id="traced",
            llm_base_url=llm_server,
            llm_model="smollm2",
            llm_timeout_s=30,  # two shared cores: first tokens are slow, and must not time out
        ) as node:
            base = node.url.removesuffix("/twilio/stream")
            await asyncio.to_thread(heartbeat, NodeInfo("traced", base, capacity=2, active_calls=0))
            answer: Reply = await lambda_thread(
                invoke, voice_handler, voice_event(inbound_form(sid, number))
            )
            stream = ET.fromstring(answer.body).find("./Connect/Stream")
            assert stream is not None
            parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
            caller = SimulatedCaller(node.url, parameters=parameters, call_sid=sid, **PATIENT)
            # A knowledge question (the LLM streams the answer), then the menu's way out.
            await caller.run([question, clip("order_status"), clip("human")])
        call_id = parameters["call_id"]
        for _ in range(200):
            row = sql.execute(
                "SELECT ended_at FROM calls WHERE call_id = %s", (call_id,)
            ).fetchone()
            if row and row["ended_at"]:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(consuming, 30)
        await consumer_bus.stop()
        await pool.close()

    version, trace_id, webhook_span_id, _flags = str(parameters["traceparent"]).split("-")
    assert version == "00" and len(trace_id) == 32

    def complete(spans: list[dict[str, Any]]) -> bool:
        names = {s["operationName"] for s in spans}
        return "consume call.ended" in names and "call" in names

    spans = await asyncio.to_thread(read_trace, jaeger, trace_id, complete)
    by_id = {s["spanID"]: s for s in spans}
    names = [s["operationName"] for s in spans]

    # The stream's context is the webhook's (or the span FastAPI opens inside it for the route).
    webhook = by_id[webhook_span_id]
    while parent_of(webhook) is not None:
        webhook = by_id[str(parent_of(webhook))]
    assert webhook["operationName"] == "POST /twilio/voice", names
    [call] = [s for s in spans if s["operationName"] == "call"]
    assert parent_of(call) == webhook_span_id
    tags = {t["key"]: t["value"] for t in call["tags"]}
    assert tags["call.id"] == call_id and tags["tenant.id"] == tenant.tenant_id

    turns = [s for s in spans if s["operationName"].startswith("turn ")]
    assert turns and all(parent_of(t) == call["spanID"] for t in turns), names
    for turn in turns:
        stages = [s for s in spans if parent_of(s) == turn["spanID"]]
        assert stages and {s["operationName"] for s in stages} <= STAGES
        for stage in stages:  # inside their turn (Jaeger times are microseconds)
            assert stage["startTime"] >= turn["startTime"] - 1
            assert (
                stage["startTime"] + stage["duration"] <= turn["startTime"] + turn["duration"] + 1
            )
    # Every stage of a caller's turn is there, and the turn lasts what the call recorded.
    answered = [t for t in turns if t["operationName"] != "turn 0"]
    assert answered, names
    stage_names = {
        s["operationName"] for t in answered for s in spans if parent_of(s) == t["spanID"]
    }
    assert stage_names == STAGES, stage_names
    recorded = {
        r["turn_index"]: r["voice_to_voice_ms"]
        for r in sql.execute(
            "SELECT turn_index, voice_to_voice_ms FROM call_latency WHERE call_id = %s", (call_id,)
        ).fetchall()
    }
    for turn in answered:
        index = int(turn["operationName"].removeprefix("turn "))
        assert abs(turn["duration"] / 1000 - recorded[index]) < 2.0, (turn, recorded)

    consumed = [s for s in spans if s["operationName"].startswith("consume ")]
    assert {"consume call.started", "consume call.ended"} <= {s["operationName"] for s in consumed}
    assert all(parent_of(s) == call["spanID"] for s in consumed)
    writes = [s for s in spans if s["operationName"] == "postgres write"]
    assert {parent_of(w) for w in writes} == {s["spanID"] for s in consumed}

    # The LLM's requests: spans of the call (they run in the call's tasks), with what a slow one
    # needs to be understood. (The agent's HTTP actions: tests/dialogue/test_engine.py.)
    # (The routing choice or the call's summary may ask the LLM too: every request is a span.)
    requests = [s for s in spans if s["operationName"] == "llm request"]
    assert requests and all(parent_of(r) == call["spanID"] for r in requests), requests
    tags_of = [{t["key"]: t["value"] for t in r["tags"]} for r in requests]
    streamed = [
        (r, t) for r, t in zip(requests, tags_of, strict=True) if "llm.time_to_first_token_ms" in t
    ]
    # Every request names its model and counts its tokens, inside the call's span. Whether the
    # knowledge answer is streamed depends on how the small local model routes the question
    # (one CI run in two it did not): time to first token is checked on each streamed one.
    for llm, llm_tags in zip(requests, tags_of, strict=True):
        assert llm_tags["gen_ai.request.model"] == "smollm2"
        assert llm_tags["gen_ai.usage.output_tokens"] > 0
        assert call["startTime"] <= llm["startTime"]
        assert llm["startTime"] + llm["duration"] <= call["startTime"] + call["duration"]
    for llm, llm_tags in streamed:
        assert 0 < llm_tags["llm.time_to_first_token_ms"] <= llm["duration"] / 1000


async def test_an_agents_http_action_is_a_span_of_its_call(
    jaeger: str,
    start_node: NodeFactory,  # noqa: F811
    orders_api: str,  # noqa: F811
) -> None:
    """The order lookup the confirmed number triggers: a client span of the call in the same
    trace, with its method, URL and status, inside the turn that ran it."""
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    async with start_node(node_id="traced-actions") as node:
        result = await call(
            node.url,
            [clip("order_status"), clip("order_number"), clip("yes")],
            parameters={"orders_api": orders_api, "traceparent": f"00-{trace_id}-{parent_id}-01"},
            **PATIENT,
        )
        await node.wait_call_ended(result.call_sid)
    assert OrdersApi.requests == ["/orders/4572"]

    def complete(spans: list[dict[str, Any]]) -> bool:
        names = {s["operationName"] for s in spans}
        return {"call", "http action"} <= names and "turn 3" in names

    spans = await asyncio.to_thread(read_trace, jaeger, trace_id, complete)
    [call_span] = [s for s in spans if s["operationName"] == "call"]
    assert parent_of(call_span) == parent_id
    [action] = [s for s in spans if s["operationName"] == "http action"]
    tags = {t["key"]: t["value"] for t in action["tags"]}
    assert tags["http.request.method"] == "GET"
    assert tags["url.full"] == f"{orders_api}/orders/4572"
    assert tags["http.response.status_code"] == 200
    assert tags["span.kind"] == "client"
    assert parent_of(action) == call_span["spanID"]
    [turn] = [s for s in spans if s["operationName"] == "turn 3"]
    # Run after the caller's "yes" ended and before the reply that reads the status began.
    assert turn["startTime"] <= action["startTime"]
    assert action["startTime"] + action["duration"] <= turn["startTime"] + turn["duration"]
