"""The reply prepared during the endpoint wait, through a real node with real models: used when
the turn is confirmed as tried, dropped without a trace when the caller goes on, and never the
cause of an HTTP request the confirmed turn would not make."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from media_nodes.simulator.caller import Say, call
from shared.events.models import IntentDetected, TurnAgent, TurnUser
from tests.media.conftest import PATIENT, NodeFactory, RunningNode, clip, words


class OrdersApi(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        OrdersApi.requests.append(self.path)
        body = json.dumps({"status": "shipped", "eta": "tomorrow"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def orders_api() -> Iterator[str]:
    OrdersApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), OrdersApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def replies(running: RunningNode, result: str) -> float:
    value = running.node.metrics.registry.get_sample_value(
        "parley_speculative_replies_total", {"result": result}
    )
    return value or 0.0


def agent_text(events: list[Any], index: int) -> str:
    return " ".join(
        e.payload.text
        for e in events
        if isinstance(e.payload, TurnAgent) and e.payload.turn_index == index
    )


async def test_prepared_replies_answer_confirmed_turns_and_never_call_out_early(
    start_node: NodeFactory, orders_api: str
) -> None:
    """Asking about an order, giving its number and confirming it: the first two replies are
    prepared in the wait and used; the third needs the order lookup, so it is refused until the
    turn is confirmed, and the lookup runs once."""
    # A wait long enough for the speculative transcript to be in on a busy machine: a reply is
    # only prepared for a transcript that arrives before the turn is confirmed.
    async with start_node(endpoint_silence_ms=900) as running:
        result = await call(
            running.url,
            [clip("order_status"), clip("order_number"), clip("yes")],
            parameters={"orders_api": orders_api},
            **PATIENT,
        )
        events = await running.wait_call_ended(result.call_sid)
        used, refused = replies(running, "used"), replies(running, "refused")

    said = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    assert len(said) == 3, [t.text for t in said]
    assert all(t.latency_ms is not None for t in result.turns), result.to_dict()
    assert used >= 2, (used, refused)
    assert refused == 1
    assert OrdersApi.requests == ["/orders/4572"]
    assert "4 5 7 2" in agent_text(events, 2)  # the read-back of the number
    assert "shipped" in agent_text(events, 3)


async def test_a_caller_who_goes_on_gets_the_answer_to_all_of_the_turn(
    start_node: NodeFactory,
) -> None:
    """A question, a long pause, then a request for a person: the reply prepared for the
    question is dropped, and only the answer to the whole turn is heard and recorded."""
    first, second = clip("opening_hours"), clip("human")
    pause = np.zeros(int(0.9 * 8000), dtype=np.int16)  # past the speculative pause, not the end
    spoken = Say(np.concatenate([first.audio, pause, second.audio]), label="question, then more")
    async with start_node(endpoint_silence_ms=1400) as running:
        result = await call(running.url, [spoken], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)
        used, dropped = replies(running, "used"), replies(running, "dropped")

    said = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    assert len(said) == 1 and {"opening", "hours", "person"} <= words(said[0].text), said
    assert dropped >= 1, (used, dropped)
    intents = [e.payload.intent for e in events if isinstance(e.payload, IntentDetected)]
    answers = [e.payload for e in events if isinstance(e.payload, TurnAgent)]
    assert [a.turn_index for a in answers] == [0, 1], [(a.turn_index, a.text) for a in answers]
    # One decision for turn 1, made on the whole turn: a person was asked for.
    assert "opening_hours" not in intents, intents
    assert result.closed_by_agent, "the agent hands the call to a person and hangs up"


async def test_switched_off_no_reply_is_prepared(start_node: NodeFactory) -> None:
    async with start_node(speculative_reply=False) as running:
        result = await call(running.url, [clip("order_status")], **PATIENT)
        await running.wait_call_ended(result.call_sid)
        counted = sum(replies(running, r) for r in ("used", "dropped", "refused"))
    assert result.turns[0].latency_ms is not None
    assert counted == 0
