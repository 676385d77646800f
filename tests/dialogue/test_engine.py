"""The session's protocol behaviour: barge-in, outcomes, bad input, real HTTP tool calls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from media_nodes.dialogue.engine import AgentSession
from media_nodes.dialogue.factory import AgentDialogueFactory, AgentUnavailable
from media_nodes.dialogue.protocol import (
    AgentOutput,
    AgentText,
    DialogueSession,
    DtmfInput,
    Escalation,
    NoInput,
    Outcome,
    SlotResult,
    ToolCall,
    Transfer,
    UserTurn,
)
from media_nodes.dialogue.runtime import AgentRuntime


class ShopApi(BaseHTTPRequestHandler):
    """A real HTTP server standing in for the shop's order API."""

    def do_GET(self) -> None:
        order = self.path.rsplit("/", 1)[-1]
        if order == "1111":
            time.sleep(3)  # slower than the action's 2 s timeout
        if order == "2222":
            self._reply(500, b"oops")
        elif order == "3333":
            self._reply(200, b"not json")
        elif order == "4444":
            self._reply(200, json.dumps({"status": "packed"}).encode())  # no eta
        else:
            self._reply(200, json.dumps({"status": "shipped", "eta": "tomorrow"}).encode())

    def _reply(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except BrokenPipeError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def shop_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ShopApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def collect(stream: Any) -> list[AgentOutput]:
    return [item async for item in stream]


def said(outputs: list[AgentOutput]) -> str:
    return "".join(o.text for o in outputs if isinstance(o, AgentText))


async def order_session(runtime: AgentRuntime, api: str) -> tuple[AgentSession, httpx.AsyncClient]:
    client = httpx.AsyncClient()
    session = AgentSession(
        replace(runtime, http=client), call_id="c", variables={"orders_api": api}
    )
    await collect(session.greeting())
    await collect(session.handle(UserTurn("where is my order")))
    return session, client


async def test_session_satisfies_protocol(acme_runtime: AgentRuntime) -> None:
    session: DialogueSession = AgentSession(acme_runtime, call_id="c", variables={})
    assert session.state == "main_menu"


async def test_tool_call_fills_slots_from_real_http(
    acme_runtime: AgentRuntime, shop_api: str
) -> None:
    session, client = await order_session(acme_runtime, shop_api)
    async with client:
        await collect(session.handle(DtmfInput("5678#")))
        out = await collect(session.handle(UserTurn("yes")))
    assert session.slots == {
        "order_number": "5678",
        "order_status": "shipped",
        "delivery_date": "tomorrow",
    }
    assert SlotResult("order_status", "shipped", "tool") in out
    (call,) = [o for o in out if isinstance(o, ToolCall)]
    assert (call.state, call.ok, call.status, call.error) == ("lookup_order", True, 200, None)
    assert "Order 5 6 7 8 is shipped, and should arrive tomorrow." in said(out)
    assert session.trace[-1].kind != "tool_failure"


async def test_an_http_action_is_a_span_of_the_call(
    acme_runtime: AgentRuntime, shop_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each HTTP action is a client span, a child of whatever span the call runs in, with its
    method, URL (no query: caller values may sit there) and status; a failed one says why."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from shared import tracing

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))
    calls = []
    for order in ("5678", "2222", "1111"):
        session, client = await order_session(acme_runtime, shop_api)
        async with client:
            with tracing.tracer.start_as_current_span("call") as call:
                await collect(session.handle(DtmfInput(f"{order}#")))
                await collect(session.handle(UserTurn("yes")))
            calls.append(call.get_span_context().span_id)
    actions = [s for s in exported.get_finished_spans() if s.name == "http action"]
    assert len(actions) == 3
    ok, refused, slow = actions
    for span in actions:
        assert span.kind == SpanKind.CLIENT and span.parent is not None
        assert span.attributes["http.request.method"] == "GET"
    assert ok.attributes["url.full"] == f"{shop_api}/orders/5678"
    assert ok.attributes["http.response.status_code"] == 200
    assert refused.attributes["http.response.status_code"] == 500
    assert slow.status.status_code == StatusCode.ERROR  # timed out: no answer, no status code
    assert "http.response.status_code" not in slow.attributes
    assert [span.parent.span_id for span in actions if span.parent] == calls


@pytest.mark.parametrize(
    ("order", "error"),
    [
        ("1111", "timed out after 2s"),
        ("2222", "HTTP 500"),
        ("3333", "not JSON"),
        ("4444", "no 'eta'"),
    ],
)
async def test_tool_failures_take_the_failure_route(
    acme_runtime: AgentRuntime, shop_api: str, order: str, error: str
) -> None:
    session, client = await order_session(acme_runtime, shop_api)
    async with client:
        await collect(session.handle(UserTurn(" ".join(order))))
        out = await collect(session.handle(UserTurn("yes")))
    assert "couldn't find order" in said(out)
    assert session.state == "anything_else"
    failures = [t.detail for t in session.trace if t.kind == "tool_failure"]
    assert failures and error in failures[0]
    (call,) = [o for o in out if isinstance(o, ToolCall)]
    assert call.state == "lookup_order" and not call.ok
    assert call.error is not None and error in call.error and "http" not in call.error


async def test_tool_failure_without_route_escalates(
    acme_runtime: AgentRuntime, shop_api: str
) -> None:
    definition = acme_runtime.definition
    lookup = definition.states["lookup_order"]
    assert lookup.action is not None
    states = {
        **definition.states,
        "lookup_order": lookup.model_copy(
            update={"action": lookup.action.model_copy(update={"on_failure": None})}
        ),
    }
    runtime = replace(
        acme_runtime,
        loaded=replace(
            acme_runtime.loaded, definition=definition.model_copy(update={"states": states})
        ),
    )
    session, client = await order_session(runtime, shop_api)
    async with client:
        await collect(session.handle(UserTurn("2 2 2 2")))
        out = await collect(session.handle(UserTurn("yes")))
    assert Escalation("tool_failure", "+15550100200") in out
    assert Transfer("+15550100200") in out
    assert session.finish("transferred").disposition == "escalated_to_human"


async def test_barge_in_leaves_session_consistent(acme_runtime: AgentRuntime) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    stream = session.handle(UserTurn("I want to check my order"))
    async for item in stream:
        if isinstance(item, AgentText):
            break  # the caller speaks over the agent: the media node stops iterating
    await stream.aclose()
    session.interrupted("Sure.")
    assert session.state == "get_order_number"
    out = await collect(session.handle(UserTurn("4 5 6 7")))
    assert "4 5 6 7" in said(out)
    assert session.history[-3].content == "Sure. ..."


async def test_prefilled_slot_and_repeat(acme_runtime: AgentRuntime) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    out = await collect(session.handle(UserTurn("I'm checking on order number 4 5 6 7")))
    assert "I have order number 4 5 6 7. Is that right?" in said(out)
    again = await collect(session.handle(UserTurn("sorry, can you repeat that?")))
    assert said(again) == "I have order number 4 5 6 7. Is that right?"


async def test_garbled_and_empty_transcripts_reprompt_then_escalate(
    acme_runtime: AgentRuntime,
) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    first = await collect(session.handle(UserTurn("")))
    second = await collect(session.handle(UserTurn("¿¿ ... !!")))
    assert "didn't catch that" in said(first) and "didn't catch that" in said(second)
    third = await collect(session.handle(UserTurn("x" * 100_000)))
    assert Escalation("failed_attempts", "+15550100200") in third
    assert any(isinstance(o, Outcome) and o.disposition == "escalated_to_human" for o in third)
    assert await collect(session.handle(UserTurn("hello?"))) == []  # call is over: no reply


async def test_finish_keeps_the_first_outcome_and_uses_tentative(
    acme_runtime: AgentRuntime,
) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    hung_up = session.finish("caller_hung_up")
    assert hung_up.disposition == "caller_hung_up"
    assert "asked about: nothing recognised" in hung_up.summary
    assert session.finish("error") is hung_up

    resolved_then_hung_up = AgentSession(acme_runtime, call_id="c2", variables={})
    resolved_then_hung_up._tentative = "resolved"  # reached a state marked resolved
    assert resolved_then_hung_up.finish("caller_hung_up").disposition == "resolved"


async def test_no_input_reprompts_then_ends(acme_runtime: AgentRuntime) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    first = await collect(session.handle(NoInput()))
    assert "Are you still there?" in said(first)
    second = await collect(session.handle(NoInput()))
    assert [o.disposition for o in second if isinstance(o, Outcome)] == ["no_input"]


async def test_factory_loads_from_files_and_rejects_unknown(factory: AgentDialogueFactory) -> None:
    session = await factory.new_session(
        tenant_id="t", agent_id="acme-shop", call_id="c", variables={}
    )
    assert session.state == "main_menu"
    again = await factory.runtime("t", "acme-shop")
    assert again is session.runtime  # compiled once per version
    with pytest.raises(AgentUnavailable):
        await factory.new_session(tenant_id="t", agent_id="nope", call_id="c", variables={})


async def test_factory_reports_broken_agents_and_database(
    settings: Any, knowledge: Any, embedder: Any, tmp_path: Any
) -> None:
    from psycopg_pool import AsyncConnectionPool

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "agent.yaml").write_text("id: broken\nname: B\n")
    local = settings.model_copy(update={"agents_dir": tmp_path})
    factory = AgentDialogueFactory(local, knowledge=knowledge, embedder=embedder)
    with pytest.raises(AgentUnavailable, match="greeting"):
        await factory.runtime("t", "broken")
    await factory.aclose()

    # Nothing listens on port 9 of the loopback: the pool cannot connect.
    pool = AsyncConnectionPool("postgresql://postgres@127.0.0.1:9/x", open=False, timeout=0.5)
    await pool.open(wait=False)
    factory = AgentDialogueFactory(settings, pool=pool, knowledge=knowledge, embedder=embedder)
    try:
        with pytest.raises(AgentUnavailable, match="database unavailable"):
            await factory.runtime("t", "acme-shop")
    finally:
        await factory.aclose()
        await pool.close()


async def test_barge_in_before_a_transfer_still_delivers_it(acme_runtime: AgentRuntime) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    stream = session.handle(UserTurn("let me talk to a real person"))
    async for item in stream:
        if isinstance(item, AgentText):
            break  # the caller talks over "Let me connect you..."
    await stream.aclose()
    late = await collect(session.handle(UserTurn("hello? are you there?")))
    assert Transfer("+15550100200") in late
    assert any(isinstance(o, Outcome) for o in late)
    assert await collect(session.handle(UserTurn("hello?"))) == []


async def test_cancelled_turn_finishes_its_decision(
    acme_runtime: AgentRuntime, shop_api: str
) -> None:
    import asyncio

    session, client = await order_session(acme_runtime, shop_api)
    async with client:
        await collect(session.handle(UserTurn("1 1 1 1")))  # the API answers this one slowly

        async def consume() -> None:
            await collect(session.handle(UserTurn("yes")))

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)  # the tool call is in flight
        task.cancel()  # barge-in: the media node cancels the turn
        with pytest.raises(asyncio.CancelledError):
            await task
        later = await collect(session.handle(UserTurn("no thanks, that's all")))
    assert session.slots["order_number"] == "1111"
    facts = [o for o in later if isinstance(o, SlotResult)]
    assert facts == [SlotResult("order_number", "1111", "digits")]  # delivered late, not lost
    assert any(t.kind == "tool_failure" for t in session.trace)
    assert session.state == "goodbye"
