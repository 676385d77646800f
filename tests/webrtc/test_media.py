"""The WebRTC transport's parts without a network: audio conversion, marks, clear, ICE, auth."""

from __future__ import annotations

import json

import aioice.ice
import av
import numpy as np
import pytest

from media_nodes.transports.port import Played
from media_nodes.transports.webrtc import (
    PIPELINE_FRAME,
    PIPELINE_RATE,
    WEBRTC_FRAME,
    WEBRTC_RATE,
    AgentAudioTrack,
    CallerAudio16k,
    allow_loopback_ice,
    browser_ice_servers,
    ice_servers,
)
from media_nodes.transports.webrtc_protocol import (
    Dtmf,
    Hangup,
    IceCandidate,
    Offer,
    SignalError,
    parse_client_message,
)
from media_nodes.transports.webrtc_signal import authorize, call_identity
from shared.settings import load_settings
from shared.tokens import TokenError, sign


def _tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def _frame(samples: np.ndarray, rate: int, layout: str = "mono") -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate = rate
    return frame


@pytest.mark.parametrize("hz", [440.0, 6000.0])  # 6 kHz: above anything a phone line carries
def test_caller_audio_is_resampled_once_to_20ms_16k_frames(hz: float) -> None:
    converter = CallerAudio16k()
    tone = _tone(WEBRTC_RATE, 1.0, hz)
    stereo = np.repeat(tone, 2)  # Opus decodes to interleaved stereo
    frames: list[np.ndarray] = []
    for start in range(0, len(tone), WEBRTC_FRAME):
        chunk = stereo[start * 2 : (start + WEBRTC_FRAME) * 2]
        frames += converter.push(_frame(chunk, WEBRTC_RATE, "stereo"))
    assert all(f.dtype == np.int16 and len(f) == PIPELINE_FRAME for f in frames)
    assert 48 <= len(frames) <= 50  # one second, less the resampler's start-up delay
    pcm = np.concatenate(frames[5:])
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float32)))
    peak_hz = np.argmax(spectrum) * PIPELINE_RATE / len(pcm)
    assert abs(peak_hz - hz) < 10  # the tone survives, at the right pitch
    assert np.abs(pcm[len(pcm) // 2 :].astype(np.int32)).max() > 6000  # at its level


async def test_agent_track_plays_48k_frames_and_reports_marks_after_their_audio() -> None:
    played: list[Played] = []
    track = AgentAudioTrack(on_playback=played.append)
    assert track.rate == PIPELINE_RATE == 16000
    tone = _tone(PIPELINE_RATE, 0.1)
    for start in range(0, len(tone), PIPELINE_FRAME):
        await track.play(tone[start : start + PIPELINE_FRAME])
    await track.mark("t1-p0")
    assert track.queued_s == pytest.approx(0.1)
    received = []
    for _ in range(5):
        frame = await track.recv()
        assert frame.sample_rate == WEBRTC_RATE and frame.samples == WEBRTC_FRAME
        received.append(frame.to_ndarray().reshape(-1))
        assert played == []  # the mark's audio is still going out
    await track.recv()
    assert played == [Played("t1-p0")]
    assert np.abs(np.concatenate(received)).max() > 4000
    assert track.frames_of_speech == 5
    # Nothing queued: silence keeps flowing, and a mark with nothing before it is reported at once.
    assert np.abs((await track.recv()).to_ndarray()).max() < 50
    await track.mark("t2-p1")
    assert played == [Played("t1-p0"), Played("t2-p1")]
    track.stop()


async def test_clear_drops_queued_audio_and_its_marks() -> None:
    played: list[Played] = []
    track = AgentAudioTrack(on_playback=played.append)
    for _ in range(20):
        await track.play(_tone(PIPELINE_RATE, 0.02))
    await track.mark("t1-p0")
    await track.recv()
    await track.clear()
    assert track.queued_s == 0
    for _ in range(3):
        await track.recv()
    assert played == []  # the pipeline forgets marks on clear; none must come back
    assert track.frames_of_speech == 1
    track.stop()


def test_ice_servers_from_settings_and_loopback_candidates() -> None:
    settings = load_settings(
        webrtc_stun_urls=["stun:stun.example.com:3478"],
        webrtc_turn_urls=["turn:turn.example.com:3478?transport=udp"],
        webrtc_turn_username="parley",
        webrtc_turn_credential="s3cret",
    )
    servers = ice_servers(settings)
    assert [s.urls for s in servers] == [
        ["stun:stun.example.com:3478"],
        ["turn:turn.example.com:3478?transport=udp"],
    ]
    assert browser_ice_servers(settings)[1] == {
        "urls": ["turn:turn.example.com:3478?transport=udp"],
        "username": "parley",
        "credential": "s3cret",
    }
    assert ice_servers(load_settings()) == []
    try:
        allow_loopback_ice(True)
        assert "127.0.0.1" in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
        allow_loopback_ice(False)
        assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    finally:
        allow_loopback_ice(True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "hangup"}', Hangup()),
        ('{"type": "dtmf", "digits": "12#"}', Dtmf("12#")),
        ('{"type": "ice", "candidate": null}', IceCandidate("")),
        (
            '{"type": "ice", "candidate": "candidate:1", "sdpMid": "0", "sdpMLineIndex": 0}',
            IceCandidate("candidate:1", "0", 0),
        ),
    ],
)
def test_client_messages(text: str, expected: object) -> None:
    assert parse_client_message(text) == expected


SDP = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
)


def test_offer_fields_are_checked() -> None:
    offer = parse_client_message(
        json.dumps({"type": "offer", "sdp": SDP, "agent_id": "acme-shop", "variables": {"plan": 3}})
    )
    assert offer == Offer(sdp=SDP, agent_id="acme-shop", variables={"plan": "3"})
    for bad, code in [
        ({"sdp": SDP.replace("a=sendrecv", "a=recvonly")}, "no_audio"),
        ({"sdp": SDP, "record": "yes"}, "bad_message"),
        ({"sdp": SDP, "variables": [1]}, "bad_message"),
        ({"sdp": "x" * 70_000}, "bad_message"),
    ]:
        with pytest.raises(SignalError) as error:
            parse_client_message(json.dumps({"type": "offer", **bad}))
        assert error.value.code == code


def test_authorization_and_identity() -> None:
    dev = load_settings(allow_unsigned_streams=True)
    prod = load_settings(
        env="production",
        session_token_secret="k" * 32,
        database_url="postgresql://app@db.internal:5432/parley",
    )
    assert authorize("", dev) is None
    with pytest.raises(TokenError, match="missing"):
        authorize("", prod)
    with pytest.raises(TokenError, match="missing"):
        authorize("", load_settings(allow_unsigned_streams=False))
    token = sign("call-7", "tenant-a", "acme-shop", ttl=60, secret=prod.session_token_secret)
    claims = authorize(token, prod)
    identity = call_identity(claims, Offer(sdp=SDP, agent_id="other-agent"), prod)
    assert (identity.call_id, identity.tenant_id, identity.agent_id) == (
        "call-7",
        "tenant-a",
        "acme-shop",  # the token decides, not the offer
    )
    assert identity.channel == "webrtc"
    unsigned = call_identity(None, Offer(sdp=SDP), dev)
    assert unsigned.agent_id == dev.default_agent and unsigned.call_id.startswith("web-")
