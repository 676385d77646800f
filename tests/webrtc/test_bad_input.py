"""Bad input on /webrtc/signal: a clear error on the socket, and no peer connection left behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from shared.tokens import sign
from tests.webrtc.conftest import RunningNode, offer_sdp

pytestmark = pytest.mark.integration


async def _next(ws: Any, timeout_s: float = 15.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return message


@pytest.fixture
async def signal(media_node: RunningNode) -> AsyncIterator[Any]:
    """A signalling socket past its ``hello``."""
    async with websockets.connect(media_node.signal_url) as ws:
        hello = await _next(ws)
        assert hello["type"] == "hello" and hello["ice_servers"] == []
        yield ws


async def _expect_error(ws: Any, code: str) -> dict[str, Any]:
    message = await _next(ws)
    assert message["type"] == "error", message
    assert message["code"] == code, message
    assert message["message"] and "Traceback" not in message["message"]
    return message


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is not json", "bad_message"),
        ("[1, 2, 3]", "bad_message"),
        ('{"type": "teleport"}', "bad_message"),
        ('{"no_type": true}', "bad_message"),
        ('{"type": "offer"}', "bad_sdp"),
        ('{"type": "offer", "sdp": 42}', "bad_sdp"),
        ('{"type": "offer", "sdp": "hello, I am an offer"}', "bad_sdp"),
        ('{"type": "ice", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}', "bad_state"),
        ('{"type": "dtmf", "digits": "1"}', "bad_state"),
        ('{"type": "dtmf", "digits": "drop table"}', "bad_message"),
        ('{"type": "offer", "sdp": "v=0", "agent_id": "../../etc/passwd"}', "bad_message"),
    ],
)
async def test_nonsense_gets_a_clear_error_and_the_socket_stays_usable(
    media_node: RunningNode, signal: Any, frame: str, code: str
) -> None:
    await signal.send(frame)
    await _expect_error(signal, code)
    # Still usable: a second bad frame is answered the same way, nothing was set up.
    await signal.send(b"\x00binary")
    await _expect_error(signal, "bad_message")
    assert media_node.peers() == 0


async def test_sdp_that_parses_but_cannot_be_used(media_node: RunningNode, signal: Any) -> None:
    broken = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
    await signal.send(json.dumps({"type": "offer", "sdp": broken}))
    await _expect_error(signal, "bad_sdp")
    assert media_node.wait_idle() == (0, 0)


@pytest.mark.parametrize(
    ("audio", "video"), [(None, False), (None, True), ("recvonly", False)], ids=str
)
async def test_offer_without_caller_audio_is_refused(
    media_node: RunningNode, signal: Any, audio: str | None, video: bool
) -> None:
    sdp = await offer_sdp(audio=audio, video=video)
    await signal.send(json.dumps({"type": "offer", "sdp": sdp}))
    error = await _expect_error(signal, "no_audio")
    assert "audio" in error["message"]
    assert media_node.wait_idle() == (0, 0)


async def test_unknown_agent_is_refused_before_any_media(
    media_node: RunningNode, signal: Any
) -> None:
    sdp = await offer_sdp()
    await signal.send(json.dumps({"type": "offer", "sdp": sdp, "agent_id": "no-such-agent"}))
    await _expect_error(signal, "unknown_agent")
    assert media_node.peers() == 0


async def test_socket_closed_mid_negotiation_leaks_nothing(media_node: RunningNode) -> None:
    sdp = await offer_sdp()
    for _ in range(3):
        async with websockets.connect(media_node.signal_url) as ws:
            assert (await _next(ws))["type"] == "hello"
            await ws.send(json.dumps({"type": "offer", "sdp": sdp, "agent_id": "acme-shop"}))
        # Closed right after the offer: before, during or after the answer - nothing remains.
    assert media_node.wait_idle() == (0, 0)


async def test_answered_but_never_connected_is_cleaned_up(media_node: RunningNode) -> None:
    """The client takes the answer and vanishes without ICE: the call is torn down."""
    sdp = await offer_sdp()
    async with websockets.connect(media_node.signal_url) as ws:
        assert (await _next(ws))["type"] == "hello"
        await ws.send(json.dumps({"type": "offer", "sdp": sdp}))
        answer = await _next(ws)
        assert answer["type"] == "answer" and answer["sdp"].startswith("v=0")
        assert media_node.peers() == 1
        # Trickled candidates are taken after the offer; an unparseable one is refused.
        candidate = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
        await ws.send(json.dumps({"type": "ice", "candidate": candidate, "sdpMid": "0"}))
        await ws.send(json.dumps({"type": "ice", "candidate": ""}))
        await ws.send(json.dumps({"type": "ice", "candidate": "candidate:nonsense"}))
        await _expect_error(ws, "bad_message")
        await ws.send(json.dumps({"type": "offer", "sdp": sdp}))
        await _expect_error(ws, "duplicate_offer")
        await ws.send(json.dumps({"type": "hangup"}))
        ended = await _next(ws)
        assert ended == {"type": "ended", "reason": "caller_hung_up", "disposition": None}
    assert media_node.wait_idle() == (0, 0)


async def test_bad_token_is_refused(media_node: RunningNode) -> None:
    async with websockets.connect(f"{media_node.signal_url}?token=forged.token") as ws:
        error = await _expect_error(ws, "unauthorized")
        assert "signature" in error["message"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    expired = sign(
        "c1", "default", "acme-shop", ttl=-1, secret=media_node.settings.session_token_secret
    )
    async with websockets.connect(f"{media_node.signal_url}?token={expired}") as ws:
        error = await _expect_error(ws, "unauthorized")
        assert "expired" in error["message"]
    assert media_node.peers() == 0
