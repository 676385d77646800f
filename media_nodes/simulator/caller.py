"""A simulated caller that behaves like Twilio's side of a Media Stream.

Every 20 ms it sends one frame of caller audio (speech from a WAV, or mu-law silence, as a real
phone line does) and plays one frame of the agent's audio from its buffer. Marks are echoed when
the audio sent before them has played; ``clear`` empties the buffer and echoes pending marks, as
Twilio does. Between utterances the caller waits for the agent to finish speaking (or interrupts
it, with ``barge_in_after_ms``). Latency is measured at the caller: the moment the caller's last
voiced frame went out -> the first non-silent agent frame arriving.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import websockets

from media_nodes.audio.codec import mulaw_silence, mulaw_to_pcm, pcm_to_mulaw
from media_nodes.audio.resample import resample

RATE = 8000
FRAME = 160
FRAME_S = 0.02
VOICED_PEAK = 400  # int16 peak above which a frame counts as speech (caller and agent)
SILENCE = mulaw_silence(FRAME)
UNDERRUN_MIN_S = 0.1  # a dry buffer for less than this is scheduling jitter, not a gap


def load_wav(path: Path) -> npt.NDArray[np.int16]:
    """A PCM16 WAV as 8 kHz mono int16."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
            channels, rate = wav.getnchannels(), wav.getframerate()
            audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a WAV file ({exc})") from None
    if channels > 1:
        audio = audio.reshape(-1, channels)[:, 0].copy()
    return resample(audio, rate, RATE)


def save_wav(path: Path, audio: npt.NDArray[np.int16], rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(audio.astype("<i2").tobytes())


def _frames(audio: npt.NDArray[np.int16]) -> tuple[list[bytes], int, int]:
    """mu-law 20 ms frames and the indices of the first and last voiced ones."""
    padded = np.concatenate([audio, np.zeros(-len(audio) % FRAME, dtype=np.int16)])
    chunks = padded.reshape(-1, FRAME)
    voiced = np.flatnonzero(np.abs(chunks.astype(np.int32)).max(axis=1) > VOICED_PEAK)
    first = int(voiced[0]) if len(voiced) else 0
    last = int(voiced[-1]) if len(voiced) else len(chunks) - 1
    return [pcm_to_mulaw(c) for c in chunks], first, last


@dataclass(frozen=True)
class Say:
    audio: npt.NDArray[np.int16]
    label: str = ""
    barge_in_after_ms: int | None = None  # start this long after the agent starts answering
    hang_up_after_ms: int | None = None  # drop the socket this far into the utterance
    # Sent as soon as queued, whatever the agent is doing: an answering machine's greeting and
    # its beep do not wait for anyone.
    at_once: bool = False


@dataclass(frozen=True)
class Press:
    digits: str


@dataclass(frozen=True)
class Raw:
    """A frame sent exactly as given (text or binary): for tests of bad input."""

    frame: str | bytes


Step = Say | Press | Raw


@dataclass
class TurnResult:
    label: str
    latency_ms: float | None = None  # caller's last voiced frame -> first agent audio
    barge_in_clear_ms: float | None = None  # caller's first voiced frame -> clear received
    speech_start_at: float | None = None
    speech_end_at: float | None = None


@dataclass
class CallResult:
    stream_sid: str
    call_sid: str
    turns: list[TurnResult] = field(default_factory=list)
    greeting_ms: float | None = None  # start sent -> first agent audio
    agent_audio: npt.NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, np.int16))
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    closed_by_agent: bool = False
    close_code: int | None = None
    underruns: int = 0  # times the agent's audio ran dry in the middle of an answer
    longest_gap_ms: float = 0.0  # the longest of those silences
    # After each clear, how long until voiced agent audio arrived again (a resume after a
    # backchannel, or the answer after a barge-in).
    back_after_clear_ms: list[float] = field(default_factory=list)
    # When each voiced frame of the agent's audio was played at the caller (monotonic seconds).
    agent_voiced_at: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream_sid": self.stream_sid,
            "call_sid": self.call_sid,
            "greeting_ms": self.greeting_ms,
            "turns": [
                {k: v for k, v in t.__dict__.items() if not k.endswith("_at")} for t in self.turns
            ],
            "marks_echoed": len(self.marks_echoed),
            "clears": self.clears,
            "closed_by_agent": self.closed_by_agent,
            "underruns": self.underruns,
            "longest_gap_ms": self.longest_gap_ms,
            "back_after_clear_ms": self.back_after_clear_ms,
            "agent_audio_s": len(self.agent_audio) / RATE,
        }


class SimulatedCaller:
    def __init__(
        self,
        url: str,
        *,
        parameters: dict[str, str] | None = None,
        agent_done_silence_ms: int = 1200,
        think_ms: int = 300,
        turn_timeout_s: float = 30.0,
        call_sid: str | None = None,
        background: npt.NDArray[np.int16] | None = None,
    ) -> None:
        self.url = url
        # Room noise mixed under every frame sent, voiced or not, looped (see simulator/noise.py).
        self.background = background
        self._background_at = 0
        self.parameters = parameters or {}
        self.agent_done_silence_s = agent_done_silence_ms / 1000
        self.think_s = think_ms / 1000
        self.turn_timeout_s = turn_timeout_s
        self.result = CallResult(
            stream_sid="MZ" + uuid.uuid4().hex, call_sid=call_sid or "CA" + uuid.uuid4().hex
        )
        self._ws: Any = None
        # (frame, its turn, is the turn's first voiced frame, is its last voiced frame)
        self._outgoing: deque[tuple[bytes, TurnResult | None, bool, bool]] = deque()
        self._playback = bytearray()
        self._played = 0  # bytes of agent audio played so far
        self._received = 0  # bytes of agent audio received so far
        self._pending_marks: deque[tuple[int, str]] = deque()
        self._agent_audio: list[bytes] = []
        self._last_agent_audio_at = 0.0
        self._agent_spoke_at: float | None = None  # first voiced frame of the current answer
        self._waiting_turn: TurnResult | None = None
        self._barge_turn: TurnResult | None = None
        self._seq = 0
        self._started_at = 0.0
        self._closed = asyncio.Event()
        self._starved_at: float | None = None
        self._cleared_at: float | None = None

    def hang_up(self) -> None:
        """End the call from the line's side (Twilio replacing the stream's TwiML does this):
        the script stops and the socket closes. Call on the caller's own loop."""
        self._closed.set()

    # ---- wire ---------------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        self._seq += 1
        message["sequenceNumber"] = str(self._seq)
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._ws.send(json.dumps(message))

    async def _receive(self) -> None:
        try:
            async for text in self._ws:
                message = json.loads(text)
                event = message.get("event")
                if event == "media":
                    self._on_media(base64.b64decode(message["media"]["payload"]))
                elif event == "mark":
                    name = message["mark"]["name"]
                    if self._received <= self._played:
                        await self._echo_mark(name)
                    else:
                        self._pending_marks.append((self._received, name))
                elif event == "clear":
                    self.result.clears += 1
                    self._cleared_at = time.monotonic()
                    self._playback.clear()
                    self._starved_at = None
                    self._received = self._played
                    barged = self._barge_turn
                    if barged is not None and barged.speech_start_at is not None:
                        barged.barge_in_clear_ms = round(
                            (time.monotonic() - barged.speech_start_at) * 1000, 1
                        )
                        self._barge_turn = None
                    while self._pending_marks:
                        await self._echo_mark(self._pending_marks.popleft()[1])
        except websockets.ConnectionClosed as exc:
            self.result.close_code = exc.rcvd.code if exc.rcvd else None
        finally:
            if not self._closed.is_set():
                self.result.closed_by_agent = True
                self._closed.set()

    def _on_media(self, mulaw: bytes) -> None:
        now = time.monotonic()
        if self._starved_at is not None:
            # Audio resumed after the buffer ran dry in the middle of an answer: the caller
            # heard a gap the agent did not mean (an underrun).
            dry_s = now - self._starved_at
            if UNDERRUN_MIN_S <= dry_s < self.agent_done_silence_s:
                self.result.underruns += 1
                self.result.longest_gap_ms = max(self.result.longest_gap_ms, round(dry_s * 1000, 1))
            self._starved_at = None
        self._playback.extend(mulaw)
        self._received += len(mulaw)
        self._last_agent_audio_at = now
        voiced = int(np.abs(mulaw_to_pcm(mulaw).astype(np.int32)).max()) > VOICED_PEAK
        if not voiced:
            return
        if self._cleared_at is not None:
            self.result.back_after_clear_ms.append(round((now - self._cleared_at) * 1000, 1))
            self._cleared_at = None
        if self.result.greeting_ms is None:
            self.result.greeting_ms = round((now - self._started_at) * 1000, 1)
        turn = self._waiting_turn
        caller_talking = turn is not None and turn.speech_end_at is None
        if self._agent_spoke_at is None and not caller_talking:
            self._agent_spoke_at = now  # an answer, not the rest of what the caller talked over
        if turn is not None and turn.speech_end_at is not None and turn.latency_ms is None:
            turn.latency_ms = round((now - turn.speech_end_at) * 1000, 1)
            self._waiting_turn = None

    async def _echo_mark(self, name: str) -> None:
        self.result.marks_echoed.append(name)
        await self._send(
            {"event": "mark", "streamSid": self.result.stream_sid, "mark": {"name": name}}
        )

    # ---- real-time clock ----------------------------------------------------------------------

    async def _tick(self) -> None:
        """Every 20 ms: one caller frame out, one agent frame played."""
        next_at = time.monotonic()
        chunk = 0
        while not self._closed.is_set():
            if self._outgoing:
                payload, turn, is_first_voiced, is_last_voiced = self._outgoing.popleft()
            else:
                payload, turn, is_first_voiced, is_last_voiced = SILENCE, None, False, False
            now = time.monotonic()
            if turn is not None and is_first_voiced:
                turn.speech_start_at = now
            if turn is not None and is_last_voiced:
                turn.speech_end_at = now
            chunk += 1
            payload = self._under_background(payload)
            await self._send(
                {
                    "event": "media",
                    "streamSid": self.result.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(chunk),
                        "timestamp": str(int((now - self._started_at) * 1000)),
                        "payload": base64.b64encode(payload).decode(),
                    },
                }
            )
            self._play_one()
            while self._pending_marks and self._pending_marks[0][0] <= self._played:
                await self._echo_mark(self._pending_marks.popleft()[1])
            next_at += FRAME_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def _under_background(self, payload: bytes) -> bytes:
        bed = self.background
        if bed is None or not len(bed):
            return payload
        pcm = mulaw_to_pcm(payload).astype(np.int32)
        idx = (self._background_at + np.arange(len(pcm))) % len(bed)
        self._background_at = int(idx[-1]) + 1
        return pcm_to_mulaw(np.clip(pcm + bed[idx], -32768, 32767).astype(np.int16))

    def _play_one(self) -> None:
        if self._playback:
            frame = bytes(self._playback[:FRAME])
            del self._playback[:FRAME]
            self._played += len(frame)
            self._agent_audio.append(frame)
            if int(np.abs(mulaw_to_pcm(frame).astype(np.int32)).max()) > VOICED_PEAK:
                self.result.agent_voiced_at.append(time.monotonic())
            if not self._playback:
                self._starved_at = time.monotonic()
        elif self._agent_audio:
            self._agent_audio.append(SILENCE)

    # ---- script -------------------------------------------------------------------------------

    async def _wait_agent_done(self) -> None:
        """Until the agent has spoken and then stayed quiet (buffer played out) for a while."""
        deadline = time.monotonic() + self.turn_timeout_s
        while time.monotonic() < deadline and not self._closed.is_set():
            quiet = time.monotonic() - self._last_agent_audio_at
            if (
                self._agent_spoke_at is not None
                and not self._playback
                and (quiet >= self.agent_done_silence_s)
            ):
                return
            await asyncio.sleep(0.02)

    async def _wait_agent_speaking(self, after_ms: int) -> None:
        deadline = time.monotonic() + self.turn_timeout_s
        while self._agent_spoke_at is None and time.monotonic() < deadline:
            if self._closed.is_set():
                return
            await asyncio.sleep(0.01)
        if self._agent_spoke_at is not None:
            wait = self._agent_spoke_at + after_ms / 1000 - time.monotonic()
            await asyncio.sleep(max(0.0, wait))

    async def _say(self, step: Say) -> TurnResult:
        turn = TurnResult(label=step.label)
        frames, first_voiced, last_voiced = _frames(step.audio)
        self._agent_spoke_at = None
        self._waiting_turn = turn
        if step.barge_in_after_ms is not None:
            self._barge_turn = turn
        for i, frame in enumerate(frames):
            self._outgoing.append((frame, turn, i == first_voiced, i == last_voiced))
        self.result.turns.append(turn)
        return turn

    async def run(self, steps: list[Step], *, preamble: list[Raw] | None = None) -> CallResult:
        """Place the call; ``preamble`` frames go out before ``start`` (bad-input tests)."""
        async with websockets.connect(self.url, max_size=None, open_timeout=10) as ws:
            self._ws = ws
            receiver = asyncio.create_task(self._receive())
            await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            for raw in preamble or []:
                await ws.send(raw.frame)
            self._started_at = time.monotonic()
            await self._send(
                {
                    "event": "start",
                    "streamSid": self.result.stream_sid,
                    "start": {
                        "streamSid": self.result.stream_sid,
                        "accountSid": "AC" + "0" * 32,
                        "callSid": self.result.call_sid,
                        "tracks": ["inbound"],
                        "customParameters": self.parameters,
                        "mediaFormat": {
                            "encoding": "audio/x-mulaw",
                            "sampleRate": 8000,
                            "channels": 1,
                        },
                    },
                }
            )
            ticker = asyncio.create_task(self._tick())
            try:
                for step in steps:
                    if self._closed.is_set():
                        break
                    await self._play_step(step)
                if not self._closed.is_set():
                    await self._wait_agent_done()
                if not self._closed.is_set():
                    await self._send(
                        {
                            "event": "stop",
                            "streamSid": self.result.stream_sid,
                            "stop": {
                                "accountSid": "AC" + "0" * 32,
                                "callSid": self.result.call_sid,
                            },
                        }
                    )
                    self._closed.set()
            finally:
                self._closed.set()
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                with contextlib.suppress(Exception):
                    await ws.close()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(receiver, 5)
        audio = b"".join(self._agent_audio)
        self.result.agent_audio = mulaw_to_pcm(audio) if audio else np.zeros(0, np.int16)
        return self.result

    async def _play_step(self, step: Step) -> None:
        if isinstance(step, Raw):
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._ws.send(step.frame)
            return
        if isinstance(step, Press):
            await self._wait_agent_done()
            turn = TurnResult(label=f"dtmf {step.digits}")
            self._agent_spoke_at = None
            self._waiting_turn = turn
            for digit in step.digits:
                await self._send(
                    {
                        "event": "dtmf",
                        "streamSid": self.result.stream_sid,
                        "dtmf": {"track": "inbound_track", "digit": digit},
                    }
                )
                turn.speech_end_at = time.monotonic()
                await asyncio.sleep(0.15)
            self.result.turns.append(turn)
            return
        if step.barge_in_after_ms is not None:
            await self._wait_agent_speaking(step.barge_in_after_ms)
        elif not step.at_once:
            await self._wait_agent_done()
            await asyncio.sleep(self.think_s)
        await self._say(step)
        if step.hang_up_after_ms is not None:
            # Drop the socket mid-utterance, as a caller whose line dies would.
            await asyncio.sleep(step.hang_up_after_ms / 1000)
            await self._ws.close()
            self._closed.set()
            return
        while self._outgoing and not self._closed.is_set():  # noqa: ASYNC110 - the ticker drains
            await asyncio.sleep(0.02)


async def call(
    url: str,
    steps: list[Step],
    *,
    parameters: dict[str, str] | None = None,
    preamble: list[Raw] | None = None,
    **options: Any,
) -> CallResult:
    """Place one simulated call."""
    caller = SimulatedCaller(url, parameters=parameters, **options)
    return await caller.run(steps, preamble=preamble)
