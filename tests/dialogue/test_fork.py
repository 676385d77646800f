"""A fork of a session tries the caller's turn before the turn is confirmed: it must leave the
call untouched, decide what the session itself would, and refuse actions with outside effects."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from media_nodes.dialogue.engine import AgentSession
from media_nodes.dialogue.protocol import AgentOutput, AgentText, SpeculationRefused, UserTurn
from media_nodes.dialogue.runtime import AgentRuntime

UNSHARED = ("runtime", "agent", "_deciding", "_embedded")  # shared by calls, or a cache


def snapshot(session: AgentSession) -> dict[str, Any]:
    return {k: v for k, v in vars(session).items() if k not in UNSHARED}


async def collect(stream: Any) -> list[AgentOutput]:
    return [item async for item in stream]


def said(outputs: list[AgentOutput]) -> str:
    return "".join(o.text for o in outputs if isinstance(o, AgentText))


class CountingShop(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        CountingShop.requests.append(self.path)
        body = json.dumps({"status": "shipped", "eta": "tomorrow"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def shop() -> Iterator[str]:
    CountingShop.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingShop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_a_trial_turn_leaves_the_session_as_it_was(acme_runtime: AgentRuntime) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    await collect(session.handle(UserTurn("I'd like to know where my parcel is"), turn_index=1))
    before = snapshot(session)
    fork = session.fork()
    assert fork is not None
    tried = await collect(fork.handle(UserTurn("it's order 4 5 6 7"), turn_index=2))
    assert "4 5 6 7" in said(tried)
    assert (fork.expecting, session.expecting) == ("yes_no", "digits")  # a read-back waits
    assert snapshot(session) == before
    # The session, given the same words later, decides what the fork did.
    real = await collect(session.handle(UserTurn("it's order 4 5 6 7"), turn_index=2))
    assert said(real) == said(tried)
    assert (session.state, session.expecting) == (fork.state, fork.expecting)


async def test_a_fork_of_a_fork_is_independent_too(acme_runtime: AgentRuntime) -> None:
    session = AgentSession(acme_runtime, call_id="c", variables={})
    await collect(session.greeting())
    first = session.fork()
    assert first is not None
    await collect(first.handle(UserTurn("can I speak to a human"), turn_index=1))
    second = session.fork()
    assert second is not None
    out = await collect(second.handle(UserTurn("what time do you open"), turn_index=1))
    assert second.history != first.history
    assert session.history[-1].role == "assistant" and len(session.history) == 1
    assert said(out)


async def test_a_trial_turn_never_calls_the_outside_world(
    acme_runtime: AgentRuntime, shop: str
) -> None:
    async with httpx.AsyncClient() as client:
        session = AgentSession(
            replace(acme_runtime, http=client), call_id="c", variables={"orders_api": shop}
        )
        await collect(session.greeting())
        await collect(session.handle(UserTurn("has my order shipped yet"), turn_index=1))
        await collect(session.handle(UserTurn("5 6 7 8"), turn_index=2))
        before = snapshot(session)
        fork = session.fork()
        assert fork is not None
        # "yes" confirms the number, and the next state looks the order up over HTTP.
        with pytest.raises(SpeculationRefused, match="orders"):
            await collect(fork.handle(UserTurn("yes"), turn_index=3))
        assert CountingShop.requests == []
        assert snapshot(session) == before
        # Once the turn is confirmed, the session itself runs the lookup, once.
        out = await collect(session.handle(UserTurn("yes"), turn_index=3))
    assert CountingShop.requests == ["/orders/5678"]
    assert "shipped" in said(out)


async def test_an_adopted_fork_acts_on_the_next_turn(acme_runtime: AgentRuntime, shop: str) -> None:
    async with httpx.AsyncClient() as client:
        session = AgentSession(
            replace(acme_runtime, http=client), call_id="c", variables={"orders_api": shop}
        )
        await collect(session.greeting())
        await collect(session.handle(UserTurn("has my order shipped yet"), turn_index=1))
        fork = session.fork()
        assert fork is not None
        # The trial: a read-back, no action; then adopted, the fork runs the lookup.
        await collect(fork.handle(UserTurn("5 6 7 8"), turn_index=2))
        out = await collect(fork.handle(UserTurn("yes"), turn_index=3))
    assert CountingShop.requests == ["/orders/5678"]
    assert "shipped" in said(out)
