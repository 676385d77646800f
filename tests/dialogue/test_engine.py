"""The session's protocol behaviour: barge-in, outcomes, bad input, real HTTP tool calls."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from media_nodes.dialogue.actions import ToolResult
from media_nodes.dialogue.engine import AgentSession, confidence, tool_called
from media_nodes.dialogue.factory import AgentDialogueFactory, AgentUnavailable
from media_nodes.dialogue.protocol import (
    AgentOutput,
    AgentText,
    DialogueSession,
    DtmfInput,
    NoInput,
    Outcome,
    Transfer,
    UserTurn,
)
from media_nodes.dialogue.runtime import AgentRuntime
from shared.agents.models import Name
from shared.events.models import EscalationRequested, IntentDetected, SlotFilled, ToolCalled


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
        elif order == "9999":
            self._reply(999, b"{}")  # no HTTP status: the event has no room for it
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
    await collect(session.handle(UserTurn("where is my order"), turn_index=1))
    return session, client


async def test_session_satisfies_protocol(acme_runtime: AgentRuntime) -> None:
    session: DialogueSession = AgentSession(acme_runtime, call_id="c", variables={})
    assert session.state == "main_menu"


async def test_tool_call_fills_slots_from_real_http(
    acme_runtime: AgentRuntime, shop_api: str
) -> None:
    session, client = await order_session(acme_runtime, shop_api)
    async with client:
        await collect(session.handle(DtmfInput("5678#"), turn_index=2))
        out = await collect(session.handle(UserTurn("yes"), turn_index=3))
    assert session.slots == {
        "order_number": "5678",
        "order_status": "shipped",
        "delivery_date": "tomorrow",
    }
    assert SlotFilled(turn_index=3, name="order_status", value="shipped", slot_type="tool") in out
    (call,) = [o for o in out if isinstance(o, ToolCalled)]
    assert (call.turn_index, call.state, call.ok) == (3, "lookup_order", True)
    assert (call.status, call.error) == (200, None)
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
                await collect(session.handle(DtmfInput(f"{order}#"), turn_index=2))
                await collect(session.handle(UserTurn("yes"), turn_index=3))
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
        await collect(session.handle(UserTurn(" ".join(order)), turn_index=2))
        out = await collect(session.handle(UserTurn("yes"), turn_index=3))
    assert "couldn't find order" in said(out)
    assert session.state == "anything_else"
    failures = [t.detail for t in session.trace if t.kind == "tool_failure"]
    assert failures and error in failures[0]
    (call,) = [o for o in out if isinstance(o, ToolCalled)]
    assert call.state == "lookup_order" and not call.ok
    assert call.error is not None and error in call.error and "http" not in call.error


async def test_an_api_status_outside_http_is_no_status(
    acme_runtime: AgentRuntime, shop_api: str
) -> None:
    """A status the event cannot hold (999) fails the tool call without a status; the call goes
    on down the failure route."""
    session, client = await order_session(acme_runtime, shop_api)
    async with client:
        await collect(session.handle(UserTurn("9 9 9 9"), turn_index=2))
        out = await collect(session.handle(UserTurn("yes"), turn_index=3))
    (call,) = [o for o in out if isinstance(o, ToolCalled)]
    assert (call.ok, call.status, call.error) == (False, None, "HTTP 999")
    assert "couldn't find order" in said(out) and session.state == "anything_else"


@pytest.mark.parametrize(
    ("score", "expected"),
    [(-0.3, 0.0), (0.0, 0.0), (0.73456, 0.7346), (0.99996, 1.0), (1.7, 1.0), (math.nan, 0.0)],
)
def test_an_intents_confidence_is_within_the_events_bounds(score: float, expected: float) -> None:
    assert confidence(score) == expected
    IntentDetected(turn_index=1, intent="x", confidence=confidence(score))


@pytest.mark.parametrize(
    ("status", "error", "elapsed_ms", "expected"),
    [
        (100, "", 0.0, (100, None, 0.0)),
        (599, "HTTP 599", 12.34, (599, "HTTP 599", 12.3)),
        (99, "HTTP 99", 1.0, (None, "HTTP 99", 1.0)),
        (600, "HTTP 600", 1.0, (None, "HTTP 600", 1.0)),
        (None, "ConnectError: [Errno 111] to http://x/secret", -0.04, (None, "ConnectError", 0.0)),
        (
            None,
            "response has no '" + "a." * 60 + "'",
            5.0,
            (None, ("response has no '" + "a." * 60)[:80], 5.0),
        ),
        (None, ": nothing before the colon", 5.0, (None, None, 5.0)),
    ],
)
def test_a_tool_call_is_within_the_events_bounds(
    status: int | None, error: str, elapsed_ms: float, expected: tuple[object, ...]
) -> None:
    """Whatever the API and the HTTP client answer, the fact is a valid event payload: no
    status outside 100..599, an error of at most 80 characters (its kind, no URL), no
    negative time."""
    result = ToolResult(ok=False, status=status, error=error, elapsed_ms=elapsed_ms)
    called = tool_called(4, "s" * 64, result)
    assert (called.status, called.error, called.elapsed_ms) == expected
    assert called.turn_index == 4 and called.state == "s" * 64


def test_every_agent_state_name_fits_a_tool_call() -> None:
    """ToolCalled.state holds 1..128 characters: the agent schema's names are 1..64."""
    names = TypeAdapter(Name)
    with pytest.raises(ValidationError):
        names.validate_python("s" * 65)
    with pytest.raises(ValidationError):
        names.validate_python("")
    with pytest.raises(ValidationError):
        ToolCalled(turn_index=0, state="", ok=True, elapsed_ms=0.0)


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
        await collect(session.handle(UserTurn("2 2 2 2"), turn_index=2))
        out = await collect(session.handle(UserTurn("yes"), turn_index=3))
    assert EscalationRequested(reason="tool_failure", target="+15550100200") in out
    assert Transfer("+15550100200") in out
    assert session.finish("transferred").disposition == "escalated_to_human"


async def test_barge_in_leaves_session_consistent(acme_runtime: AgentRuntime) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    stream = session.handle(UserTurn("I want to check my order"), turn_index=1)
    async for item in stream:
        if isinstance(item, AgentText):
            break  # the caller speaks over the agent: the media node stops iterating
    await stream.aclose()
    session.interrupted("Sure.")
    assert session.state == "get_order_number"
    out = await collect(session.handle(UserTurn("4 5 6 7"), turn_index=2))
    assert "4 5 6 7" in said(out)
    assert session.history[-3].content == "Sure. ..."


async def test_prefilled_slot_and_repeat(acme_runtime: AgentRuntime) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    out = await collect(
        session.handle(UserTurn("I'm checking on order number 4 5 6 7"), turn_index=1)
    )
    assert "I have order number 4 5 6 7. Is that right?" in said(out)
    again = await collect(session.handle(UserTurn("sorry, can you repeat that?"), turn_index=2))
    assert said(again) == "I have order number 4 5 6 7. Is that right?"


async def test_garbled_and_empty_transcripts_reprompt_then_escalate(
    acme_runtime: AgentRuntime,
) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    first = await collect(session.handle(UserTurn(""), turn_index=1))
    second = await collect(session.handle(UserTurn("¿¿ ... !!"), turn_index=2))
    assert "didn't catch that" in said(first) and "didn't catch that" in said(second)
    third = await collect(session.handle(UserTurn("x" * 100_000), turn_index=3))
    assert EscalationRequested(reason="failed_attempts", target="+15550100200") in third
    assert any(isinstance(o, Outcome) and o.disposition == "escalated_to_human" for o in third)
    # The call is over: no reply.
    assert await collect(session.handle(UserTurn("hello?"), turn_index=4)) == []


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
    first = await collect(session.handle(NoInput(), turn_index=1))
    assert "Are you still there?" in said(first)
    second = await collect(session.handle(NoInput(), turn_index=2))
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
    stream = session.handle(UserTurn("let me talk to a real person"), turn_index=1)
    async for item in stream:
        if isinstance(item, AgentText):
            break  # the caller talks over "Let me connect you..."
    await stream.aclose()
    late = await collect(session.handle(UserTurn("hello? are you there?"), turn_index=2))
    assert Transfer("+15550100200") in late
    assert any(isinstance(o, Outcome) for o in late)
    assert await collect(session.handle(UserTurn("hello?"), turn_index=3)) == []


async def test_cancelled_turn_finishes_its_decision(
    acme_runtime: AgentRuntime, shop_api: str
) -> None:
    import asyncio

    session, client = await order_session(acme_runtime, shop_api)
    async with client:
        # The API answers this one slowly.
        await collect(session.handle(UserTurn("1 1 1 1"), turn_index=2))

        async def consume() -> None:
            await collect(session.handle(UserTurn("yes"), turn_index=3))

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)  # the tool call is in flight
        task.cancel()  # barge-in: the media node cancels the turn
        with pytest.raises(asyncio.CancelledError):
            await task
        later = await collect(session.handle(UserTurn("no thanks, that's all"), turn_index=4))
    assert session.slots["order_number"] == "1111"
    # Delivered late, not lost, as facts of the turn that decided them.
    facts = [o for o in later if isinstance(o, SlotFilled | ToolCalled)]
    assert [(type(o), o.turn_index) for o in facts] == [(SlotFilled, 3), (ToolCalled, 3)]
    assert facts[0] == SlotFilled(
        turn_index=3, name="order_number", value="1111", slot_type="digits"
    )
    assert any(t.kind == "tool_failure" for t in session.trace)
    assert session.state == "goodbye"
