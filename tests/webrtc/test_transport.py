"""The WebRTC transport alone, aiortc to aiortc: a caller speaks over Opus, the agent answers."""

from __future__ import annotations

import asyncio
import json
import uuid

import psycopg
import pytest
import websockets
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from media_nodes.simulator.webrtc_caller import WebRtcCaller, load_wav_48k
from shared import tracing
from shared.tokens import sign
from tests.webrtc.conftest import AUDIO, RunningNode, offer_sdp

pytestmark = pytest.mark.integration


async def _disposition(database_url: str, call_id: str) -> tuple[str | None, str | None]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await (
            await conn.execute(
                "SELECT disposition, channel FROM calls WHERE call_id = %s", (call_id,)
            )
        ).fetchone()
    return (row[0], row[1]) if row else (None, None)


async def test_caller_is_heard_and_answered_over_webrtc(
    media_node: RunningNode, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The node (in this process) records its spans here; the page that started the call hands
    # its trace context over in the signalling URL.
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))
    page = provider.get_tracer("page").start_span("page")
    traceparent = tracing.carrier(tracing.set_span_in_context(page))["traceparent"]
    # A signed call: the token (as the admin API would issue it) names call, tenant and agent.
    call_id = f"webrtc-test-{uuid.uuid4().hex[:8]}"
    token = sign(
        call_id, "default", "acme-shop", ttl=60, secret=media_node.settings.session_token_secret
    )
    caller = WebRtcCaller(f"{media_node.signal_url}?token={token}&traceparent={traceparent}")
    try:
        await caller.connect()
        turn = await caller.say(load_wav_48k(AUDIO / "order_status.wav"), "order_status")
        # The token is good for this one live call: a second socket with it is refused.
        async with websockets.connect(f"{media_node.signal_url}?token={token}") as replay:
            assert json.loads(await replay.recv())["type"] == "hello"
            await replay.send(json.dumps({"type": "offer", "sdp": await offer_sdp()}))
            refused = json.loads(await asyncio.wait_for(replay.recv(), 15))
            assert refused["code"] == "call_in_progress", refused
        await caller.wait_agent_done()
        await caller.hang_up()
    finally:
        await caller.close()
    result = caller.result

    # The greeting and the answer came back as audio over the agent's track.
    assert result.greeting_ms is not None
    assert turn.latency_ms is not None, "no agent audio after the caller's turn"
    # The caller's Opus audio reached ASR: the transcript names the order.
    said = " ".join(m["text"] for m in result.of_type("turn.user")).lower()
    assert "order" in said, result.of_type("turn.user")
    agent_turns = {m["turn_index"] for m in result.of_type("turn.agent")}
    assert {0, 1} <= agent_turns
    latency = result.of_type("latency.measured")
    assert latency and latency[0]["voice_to_voice_ms"] is not None
    assert any(m["activity"] == "speaking" for m in result.of_type("agent.activity"))
    # The call ended with a disposition, on the socket and in the database.
    assert result.ended is not None and result.ended["reason"] == "caller_hung_up"
    assert result.ended["disposition"]
    assert result.call_id == call_id
    assert media_node.wait_idle() == (0, 0)
    for _ in range(50):
        disposition, channel = await _disposition(database_url, result.call_id)
        if disposition:
            break
        await asyncio.sleep(0.1)
    assert disposition == result.ended["disposition"]
    assert channel == "webrtc"

    # WebRTC calls are traced like phone calls: the call's span (child of the page's), a span
    # per turn with its stages, the call's end reason.
    page.end()
    spans = exported.get_finished_spans()
    (call,) = [s for s in spans if s.name == "call"]
    assert call.parent is not None and call.parent.span_id == page.get_span_context().span_id
    assert call.context.trace_id == page.get_span_context().trace_id
    assert call.attributes["call.id"] == call_id and call.attributes["call.channel"] == "webrtc"
    assert call.attributes["call.end_reason"] == "caller_hung_up"
    turns = [s for s in spans if s.name.startswith("turn ")]
    assert turns and all(t.parent and t.parent.span_id == call.context.span_id for t in turns)
    stages = {s.name for s in spans if s.parent and s.parent.span_id == turns[-1].context.span_id}
    assert {"asr", "tts first audio"} <= stages, stages


async def test_barge_in_over_webrtc_cuts_the_agent_and_the_agent_can_end_the_call(
    media_node: RunningNode,
) -> None:
    caller = WebRtcCaller(media_node.signal_url, agent_id="acme-shop")
    try:
        await caller.connect()
        await caller.say(load_wav_48k(AUDIO / "interrupt.wav"), "interrupt", barge_in_after_ms=1500)
        ended_by_node = await caller.wait_ended(60)
    finally:
        await caller.close()
    result = caller.result
    greeting = [m for m in result.of_type("turn.agent") if m["turn_index"] == 0]
    assert greeting and greeting[0]["interrupted"], result.of_type("turn.agent")
    assert len(greeting[0]["text"]) < len(greeting[0]["planned_text"])
    # The caller asked for a person: the agent says so, then ends the call from its side.
    assert result.of_type("escalation.requested")
    assert ended_by_node and result.ended is not None
    assert result.ended["reason"] == "transferred"
    assert result.ended["disposition"] == "escalated_to_human"
    assert media_node.wait_idle() == (0, 0)
