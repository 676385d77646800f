"""A caller over WebRTC, in Python (aiortc): the transport's test client and the benchmark's.

It does what the browser softphone does - ``hello``, a complete offer, the answer - then speaks
utterances from WAV files in real time through an Opus track, waits for the agent to finish
between them, and listens to the agent's track. Latency is measured at the caller, as for the
Twilio simulator: the caller's last voiced frame sent -> the first voiced agent frame received.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media_nodes.audio.resample import resample
from media_nodes.transports.webrtc import WEBRTC_FRAME, WEBRTC_RATE, allow_loopback_ice

FRAME_S = 0.02
VOICED_PEAK = 400  # int16 peak above which a frame counts as speech (as the Twilio simulator)


def load_wav_48k(path: Path) -> npt.NDArray[np.int16]:
    """A PCM16 WAV as 48 kHz mono int16 (what a browser microphone delivers)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels, rate = wav.getnchannels(), wav.getframerate()
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    if channels > 1:
        audio = audio.reshape(-1, channels)[:, 0].copy()
    return resample(audio, rate, WEBRTC_RATE)


@dataclass
class Turn:
    label: str
    speech_end_at: float | None = None
    latency_ms: float | None = None


@dataclass
class WebRtcCallResult:
    call_id: str | None = None
    greeting_ms: float | None = None  # answer received -> first voiced agent audio
    turns: list[Turn] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    agent_voiced_frames: int = 0
    ended: dict[str, Any] | None = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]


class ScriptedMic(MediaStreamTrack):
    """A microphone that plays queued utterances in real time, silence in between."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._frames: deque[tuple[npt.NDArray[np.int16], Turn | None]] = deque()
        self._silence = np.zeros(WEBRTC_FRAME, dtype=np.int16)
        self._start: float | None = None
        self._sent = 0
        self.drained = asyncio.Event()
        self.drained.set()

    def say(self, audio: npt.NDArray[np.int16], turn: Turn) -> None:
        padded = np.concatenate([audio, np.zeros(-len(audio) % WEBRTC_FRAME, dtype=np.int16)])
        chunks = padded.reshape(-1, WEBRTC_FRAME)
        voiced = np.flatnonzero(np.abs(chunks.astype(np.int32)).max(axis=1) > VOICED_PEAK)
        last = int(voiced[-1]) if len(voiced) else len(chunks) - 1
        for i, chunk in enumerate(chunks):
            self._frames.append((chunk, turn if i == last else None))
        self.drained.clear()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        wait = self._start + self._sent * FRAME_S - now
        if wait > 0:
            await asyncio.sleep(wait)
        samples, turn = self._frames.popleft() if self._frames else (self._silence, None)
        if not self._frames:
            self.drained.set()
        if turn is not None:
            turn.speech_end_at = time.monotonic()
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = WEBRTC_RATE
        frame.time_base = fractions.Fraction(1, WEBRTC_RATE)
        frame.pts = self._sent * WEBRTC_FRAME
        self._sent += 1
        return frame


class WebRtcCaller:
    def __init__(
        self,
        url: str,
        *,
        agent_id: str | None = None,
        agent_done_silence_ms: int = 700,
        think_ms: int = 300,
        turn_timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.agent_id = agent_id
        self.agent_done_silence_s = agent_done_silence_ms / 1000
        self.think_s = think_ms / 1000
        self.turn_timeout_s = turn_timeout_s
        self.result = WebRtcCallResult()
        self.mic = ScriptedMic()
        self.pc: RTCPeerConnection | None = None
        self._ws: Any = None
        self._answered_at = 0.0
        self._last_agent_audio_at = 0.0
        self._agent_spoke_at: float | None = None
        self._waiting: Turn | None = None
        self._ended = asyncio.Event()
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- signalling ---------------------------------------------------------------------------

    async def _receive(self) -> None:
        try:
            async for text in self._ws:
                msg = json.loads(text)
                self.result.messages.append(msg)
                if msg.get("type") == "ended":
                    self.result.ended = msg
                    self._ended.set()
                await self._messages.put(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._ended.set()

    async def _expect(self, kind: str, timeout_s: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await self._messages.get()
                if msg.get("type") == kind:
                    return msg
                if msg.get("type") == "error":
                    raise RuntimeError(f"signalling error: {msg}")

    # ---- agent audio --------------------------------------------------------------------------

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            samples = frame.to_ndarray()  # type: ignore[union-attr]
            if int(np.abs(samples.astype(np.int32)).max()) <= VOICED_PEAK:
                continue
            self._last_agent_audio_at = now
            self.result.agent_voiced_frames += 1
            if self.result.greeting_ms is None:
                self.result.greeting_ms = round((now - self._answered_at) * 1000, 1)
            if self._agent_spoke_at is None:
                self._agent_spoke_at = now
            turn = self._waiting
            if turn is not None and turn.speech_end_at is not None:
                turn.latency_ms = round((now - turn.speech_end_at) * 1000, 1)
                self._waiting = None

    async def wait_agent_done(self) -> None:
        """Until the agent has spoken and then stayed quiet for a while."""
        deadline = time.monotonic() + self.turn_timeout_s
        while time.monotonic() < deadline and not self._ended.is_set():
            quiet = time.monotonic() - self._last_agent_audio_at
            if self._agent_spoke_at is not None and quiet >= self.agent_done_silence_s:
                return
            await asyncio.sleep(0.02)

    async def wait_agent_speaking(self, after_ms: int = 0) -> None:
        """Until the agent has been speaking for ``after_ms`` (to talk over it)."""
        deadline = time.monotonic() + self.turn_timeout_s
        while self._agent_spoke_at is None and time.monotonic() < deadline:
            if self._ended.is_set():
                return
            await asyncio.sleep(0.01)
        if self._agent_spoke_at is not None:
            await asyncio.sleep(max(0.0, self._agent_spoke_at + after_ms / 1000 - time.monotonic()))

    async def say(
        self, audio: npt.NDArray[np.int16], label: str = "", *, barge_in_after_ms: int | None = None
    ) -> Turn:
        """Speak ``audio`` (48 kHz) once the agent has finished - or ``barge_in_after_ms`` into
        its speech - and wait until it has been sent."""
        if barge_in_after_ms is None:
            await self.wait_agent_done()
            await asyncio.sleep(self.think_s)
        else:
            await self.wait_agent_speaking(barge_in_after_ms)
        turn = Turn(label=label)
        self._agent_spoke_at = None
        self._waiting = turn
        self.result.turns.append(turn)
        self.mic.say(audio, turn)
        ended = asyncio.ensure_future(self._ended.wait())
        await asyncio.wait(
            [asyncio.ensure_future(self.mic.drained.wait()), ended],
            return_when=asyncio.FIRST_COMPLETED,
        )
        ended.cancel()
        return turn

    # ---- the call -----------------------------------------------------------------------------

    async def connect(self) -> None:
        allow_loopback_ice(True)
        self._ws = await websockets.connect(self.url, open_timeout=10)
        self._tasks.append(asyncio.create_task(self._receive(), name="webrtc-caller-receive"))
        await self._expect("hello")
        pc = RTCPeerConnection()
        self.pc = pc
        pc.addTrack(self.mic)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._listen(track)))

        await pc.setLocalDescription(await pc.createOffer())
        offer: dict[str, Any] = {"type": "offer", "sdp": pc.localDescription.sdp}
        if self.agent_id:
            offer["agent_id"] = self.agent_id
        await self._ws.send(json.dumps(offer))
        answer = await self._expect("answer")
        self.result.call_id = answer.get("call_id")
        self._answered_at = time.monotonic()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def hang_up(self, timeout_s: float = 20.0) -> None:
        """Say goodbye on the socket and wait for the node's ``ended`` (with the disposition)."""
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._ws.send(json.dumps({"type": "hangup"}))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout_s)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._ended.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.mic.stop()
        if self.pc is not None:
            await self.pc.close()
        if self._ws is not None:
            await self._ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def call(
    url: str, utterances: list[Path], *, agent_id: str | None = None, **options: Any
) -> WebRtcCallResult:
    """Place one call: speak each WAV after the agent's previous turn, then hang up."""
    caller = WebRtcCaller(url, agent_id=agent_id, **options)
    try:
        await caller.connect()
        for path in utterances:
            if caller.ended:
                break
            await caller.say(load_wav_48k(path), label=path.stem)
        if not caller.ended:
            await caller.wait_agent_done()
            await caller.hang_up()
    finally:
        await caller.close()
    return caller.result
