"""WebRTC media for a call: Opus 48 kHz in and out of aiortc, 16 kHz PCM to the pipeline.

The session (:class:`~media_nodes.pipeline.call.CallSession`) works at its transport's rate
(:class:`~media_nodes.transports.port.AudioPort`). WebRTC's is 16 kHz, the rate the models take,
so the caller's wideband audio reaches them with no phone-line detour, resampled exactly once each
way:

- caller: aiortc decodes Opus to 48 kHz frames; :class:`CallerAudio16k` resamples them to 16 kHz
  mono and cuts 20 ms PCM frames for ``CallSession.on_audio``;
- agent: :class:`AgentAudioTrack` is both the call's :class:`AudioPort` and the outbound aiortc
  track. It queues the paced 16 kHz frames and hands aiortc one 48 kHz frame every 20 ms, in real
  time. A mark is reported :class:`Played` when the audio queued before it has gone out, and
  ``clear`` drops what is still queued.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aioice.ice
import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media_nodes.transports.port import Played, frame_samples
from shared.settings import Settings

log = logging.getLogger(__name__)

WEBRTC_RATE = 48000
PIPELINE_RATE = 16000  # the session's: what ASR, VAD and end-of-turn take, no resampling there
FRAME_S = 0.02
WEBRTC_FRAME = frame_samples(WEBRTC_RATE)  # 960 samples
PIPELINE_FRAME = frame_samples(PIPELINE_RATE)  # 320 samples
LOOPBACK = "127.0.0.1"


# ---- ICE --------------------------------------------------------------------------------------


def ice_servers(settings: Settings) -> list[RTCIceServer]:
    """The configured STUN/TURN servers (none by default: host candidates only)."""
    servers = []
    if settings.webrtc_stun_urls:
        servers.append(RTCIceServer(urls=list(settings.webrtc_stun_urls)))
    if settings.webrtc_turn_urls:
        servers.append(
            RTCIceServer(
                urls=list(settings.webrtc_turn_urls),
                username=settings.webrtc_turn_username or None,
                credential=settings.webrtc_turn_credential.get_secret_value() or None,
            )
        )
    return servers


def browser_ice_servers(settings: Settings) -> list[dict[str, object]]:
    """The same servers in the shape of the browser's ``RTCConfiguration.iceServers``."""
    result: list[dict[str, object]] = []
    for server in ice_servers(settings):
        entry: dict[str, object] = {"urls": server.urls}
        if server.username:
            entry["username"] = server.username
        if server.credential:
            entry["credential"] = server.credential
        result.append(entry)
    return result


_original_host_addresses = aioice.ice.get_host_addresses


def _host_addresses_with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _original_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    if use_ipv4 and LOOPBACK not in addresses:
        addresses.append(LOOPBACK)
    return addresses


def allow_loopback_ice(enabled: bool) -> None:
    """aioice leaves 127.0.0.1 out of its host candidates, so a loopback-only host (a laptop
    offline, a CI box, this test machine) could never connect. It has no option for it; its
    module-level address discovery is the one place to add the address, process-wide."""
    aioice.ice.get_host_addresses = (
        _host_addresses_with_loopback if enabled else _original_host_addresses
    )


def new_peer_connection(settings: Settings) -> RTCPeerConnection:
    allow_loopback_ice(settings.webrtc_loopback_ice)
    return RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(settings)))


# ---- caller audio in --------------------------------------------------------------------------


class CallerAudio16k:
    """Decoded WebRTC frames (any rate and layout; Opus gives 48 kHz) -> 16 kHz PCM frames."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=PIPELINE_RATE)
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, frame: av.AudioFrame) -> list[npt.NDArray[np.int16]]:
        frame.pts = None  # the resampler only needs the samples; jitter-buffer pts may jump
        chunks: list[npt.NDArray[np.int16]] = [self._pending]
        chunks += [
            f.to_ndarray().reshape(-1).astype(np.int16) for f in self._resampler.resample(frame)
        ]
        audio = np.concatenate(chunks).astype(np.int16)
        whole = len(audio) - len(audio) % PIPELINE_FRAME
        self._pending = audio[whole:]
        return [audio[start : start + PIPELINE_FRAME] for start in range(0, whole, PIPELINE_FRAME)]


async def pump_caller_audio(
    track: MediaStreamTrack,
    on_audio: Callable[[npt.NDArray[np.int16], float], Awaitable[None]],
    *,
    on_frame: Callable[[], None] | None = None,
) -> None:
    """Feed a remote audio track into the pipeline until the track ends."""
    converter = CallerAudio16k()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        arrived = time.monotonic()
        if on_frame is not None:
            on_frame()
        for pcm in converter.push(frame):  # type: ignore[arg-type]
            await on_audio(pcm, arrived)


# ---- agent audio out --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mark:
    name: str


class AgentAudioTrack(MediaStreamTrack):
    """The agent's voice as an aiortc track, and the call's :class:`AudioPort` (16 kHz).

    ``recv`` runs on aiortc's clock: one 20 ms frame per call, in real time from the first one,
    silence when nothing is queued (RTP keeps flowing, as on a phone line).
    """

    kind = "audio"
    rate = PIPELINE_RATE

    def __init__(self, on_playback: Callable[[Played], object] | None = None) -> None:
        super().__init__()
        self.on_playback = on_playback
        self._queue: deque[npt.NDArray[np.int16] | _Mark] = deque()
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=WEBRTC_RATE)
        self._out = np.zeros(0, dtype=np.int16)
        self._silence = np.zeros(PIPELINE_FRAME, dtype=np.int16)
        self._start: float | None = None
        self._sent = 0  # frames handed to aiortc
        self.frames_of_speech = 0  # frames that carried agent audio (not idle silence)

    # ---- AudioPort (the call's side) ----------------------------------------------------------

    async def play(self, pcm: npt.NDArray[np.int16]) -> None:
        if self.readyState == "live":
            self._queue.append(pcm)

    async def mark(self, name: str) -> None:
        if self.readyState == "live":
            self._queue.append(_Mark(name))
            self._echo_played_marks()

    async def clear(self) -> None:
        self._queue.clear()
        self._out = np.zeros(0, dtype=np.int16)

    @property
    def queued_s(self) -> float:
        return sum(1 for item in self._queue if not isinstance(item, _Mark)) * FRAME_S

    # ---- aiortc's side ------------------------------------------------------------------------

    def _echo_played_marks(self) -> None:
        while self._queue and isinstance(self._queue[0], _Mark):
            mark = self._queue.popleft()
            assert isinstance(mark, _Mark)
            if self.on_playback is not None:
                self.on_playback(Played(mark.name))

    async def _pace(self) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        wait = self._start + self._sent * FRAME_S - now
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.2:  # the loop stalled: do not burst to catch up
            self._start = now - self._sent * FRAME_S

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pace()
        # Marks at the head: everything queued before them has now been sent out.
        self._echo_played_marks()
        if self._queue:
            item = self._queue.popleft()
            assert not isinstance(item, _Mark)
            pcm = item
            self.frames_of_speech += 1
        else:
            pcm = self._silence
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = PIPELINE_RATE
        resampled = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        self._out = np.concatenate([self._out, *resampled]).astype(np.int16)
        if len(self._out) < WEBRTC_FRAME:  # the resampler's start-up delay
            pad = np.zeros(WEBRTC_FRAME - len(self._out), dtype=np.int16)
            self._out = np.concatenate([pad, self._out])
        samples, self._out = self._out[:WEBRTC_FRAME], self._out[WEBRTC_FRAME:]
        out = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        out.sample_rate = WEBRTC_RATE
        out.time_base = fractions.Fraction(1, WEBRTC_RATE)
        out.pts = self._sent * WEBRTC_FRAME
        self._sent += 1
        return out
