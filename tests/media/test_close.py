"""The caller's side closes the stream socket first: the node answers the close handshake at
once (the client sees a clean close, not 1006 after its own close timeout), and ends the call.

The client reads what the node sends, as Twilio does. (One that stops reading cannot see any
close reply: the ``websockets`` client stops reading its socket once 16 frames wait unread, and
the node's reply queues behind the agent's audio until the client gives up.)"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import websockets

from shared.bus import InProcessBus
from shared.events.models import Event
from tests.media.conftest import NodeFactory

SILENCE = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of mu-law silence
CLIENT_CLOSE_TIMEOUT_S = 10.0  # the websockets library's default
# Far below the client's close timeout: an unanswered close frame takes all of it.
PROMPT_S = 5.0


def start_frame(stream_sid: str, call_sid: str) -> str:
    return json.dumps(
        {
            "event": "start",
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "accountSid": "AC" + "0" * 32,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


async def read_everything(ws: websockets.ClientConnection) -> None:
    """What Twilio does: read every frame the node sends (agent audio, marks) as it comes."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async for _ in ws:
            pass


@contextlib.asynccontextmanager
async def started_stream(
    url: str, stream_sid: str, call_sid: str
) -> AsyncIterator[tuple[websockets.ClientConnection, asyncio.Task[None]]]:
    """A stream as Twilio starts it, with a task reading everything the node sends."""
    async with websockets.connect(url, close_timeout=CLIENT_CLOSE_TIMEOUT_S) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1"}))
        await ws.send(start_frame(stream_sid, call_sid))
        yield ws, asyncio.create_task(read_everything(ws))


class SlowBroker(InProcessBus):
    """A broker that takes a call's closing events only when the test lets it: saving the call
    takes as long as the test wants."""

    def __init__(self) -> None:
        super().__init__(f"close-test-{uuid.uuid4().hex[:8]}")
        self.taking = asyncio.Event()

    async def publish(self, event: Event) -> None:
        if event.type in ("disposition.set", "call.ended"):
            await self.taking.wait()
        await super().publish(event)


@pytest.mark.parametrize("send_stop", [True, False], ids=["after-stop", "without-stop"])
async def test_a_close_from_the_caller_is_answered_promptly(
    start_node: NodeFactory, send_stop: bool
) -> None:
    """The call is still being saved (its broker is slow) when the caller closes: the close is
    answered all the same, and the call's events arrive once the broker takes them."""
    stream_sid, call_sid = "MZ" + uuid.uuid4().hex, "CA" + uuid.uuid4().hex
    broker = SlowBroker()
    async with start_node(bus=broker) as running:
        async with started_stream(running.url, stream_sid, call_sid) as (ws, reader):
            for _ in range(25):  # half a second of the caller's line
                await ws.send(
                    json.dumps(
                        {"event": "media", "streamSid": stream_sid, "media": {"payload": SILENCE}}
                    )
                )
                await asyncio.sleep(0.02)
            if send_stop:
                stop = {"event": "stop", "streamSid": stream_sid, "stop": {"callSid": call_sid}}
                await ws.send(json.dumps(stop))
                await asyncio.sleep(0.3)
            began = time.monotonic()
            await ws.close()
            took = time.monotonic() - began
            await reader
        broker.taking.set()
        events = await running.wait_call_ended(call_sid)

    assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
    assert took < PROMPT_S, f"the close handshake took {took:.1f} s"
    assert events[-1].type == "call.ended"


async def test_after_stop_the_node_closes_the_socket_before_saving_the_call(
    start_node: NodeFactory,
) -> None:
    """Twilio sends ``stop`` and waits for the node to close: the stream is released at once,
    not once the call is saved (here the broker takes the call's last events only later)."""
    stream_sid, call_sid = "MZ" + uuid.uuid4().hex, "CA" + uuid.uuid4().hex
    broker = SlowBroker()
    async with start_node(bus=broker) as running:
        async with started_stream(running.url, stream_sid, call_sid) as (ws, reader):
            stop = {"event": "stop", "streamSid": stream_sid, "stop": {"callSid": call_sid}}
            await ws.send(json.dumps(stop))
            await asyncio.wait_for(reader, PROMPT_S)  # the node's close ends the read
            saved = [e.type for e in running.events(call_sid) if e.type == "call.ended"]
        broker.taking.set()
        events = await running.wait_call_ended(call_sid)

    assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
    assert saved == [], "the socket was held open until the call was saved"
    assert events[-1].type == "call.ended"
