"""An escalation hands the live call to a human through Twilio's REST API (an HTTP fake here:
Twilio itself cannot be reached from tests), after the announcement has been heard."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from media_nodes.simulator.caller import call
from shared.events.models import TurnAgent
from tests.media.conftest import PATIENT, NodeFactory, clip, free_port, words

ACCOUNT = "AC" + "1" * 32


@contextlib.asynccontextmanager
async def fake_twilio() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """Answers ``POST /2010-04-01/Accounts/{sid}/Calls/{call}.json`` like Twilio; keeps requests."""
    seen: list[dict[str, Any]] = []

    async def update_call(request: Request) -> JSONResponse:
        form = parse_qs((await request.body()).decode())
        seen.append(
            {
                "path": request.url.path,
                "auth": request.headers.get("authorization", ""),
                "form": {k: v[0] for k, v in form.items()},
            }
        )
        sid = request.path_params["call"]
        return JSONResponse({"sid": sid, "account_sid": ACCOUNT, "status": "in-progress"})

    app = Starlette(
        routes=[
            Route("/2010-04-01/Accounts/{account}/Calls/{call}.json", update_call, methods=["POST"])
        ]
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.should_exit = True
        await task


async def test_escalation_transfers_the_call_after_the_announcement(
    start_node: NodeFactory,
) -> None:
    async with (
        fake_twilio() as (base, seen),
        start_node(
            twilio_account_sid=ACCOUNT, twilio_auth_token="test-token", twilio_api_base=base
        ) as running,
    ):
        result = await call(running.url, [clip("human")], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)

    assert result.closed_by_agent
    (request,) = seen
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{result.call_sid}.json"
    assert request["auth"] == "Basic " + base64.b64encode(f"{ACCOUNT}:test-token".encode()).decode()
    assert "<Dial>+15550100200</Dial>" in request["form"]["Twiml"]
    announcement = [e.payload for e in events if isinstance(e.payload, TurnAgent)][-1]
    assert {"connect", "team"} <= words(announcement.text) and not announcement.interrupted
    ended = events[-1].payload
    assert ended.type == "call.ended" and ended.reason == "transferred"
