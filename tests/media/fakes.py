"""Engines and a phone line that run a call's logic with no model and no socket.

* :class:`FakeAsr` hears each scripted phrase as the tone the caller "says" it with: a phrase is
  a frequency, so a speculative and a final transcription of one turn agree, and a turn's words
  are known whichever part of it is transcribed.
* :class:`FakeVad` calls a window speech when it is loud (the caller's tones), silence else.
* :class:`FakeTts` speaks a tone as long as the text (``ms_per_char``), after a configurable
  first-audio delay.
* :class:`FakeLine` is the call's audio port (PCM at 8 kHz) and plays the part of Twilio: it plays
  what it is sent in real time, reports each mark played once the audio before it has played, and
  on ``clear`` drops what it has not played and reports the dropped marks (as Twilio echoes them).
  It records everything, and what the caller heard.
* :class:`ScriptedDialogue` answers each input with a scripted reply.

:func:`fake_call` puts them together around a real :class:`CallSession`, so the call logic
(barge-in, hold and resume, backchannels, DTMF, what the caller heard) is what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from media_nodes.asr.engine import SAMPLE_RATE, AsrError, Transcript
from media_nodes.audio.vad import CONTEXT, VadState
from media_nodes.dialogue.protocol import (
    GREETING_TURN_INDEX,
    AgentOutput,
    AgentText,
    DialogueInput,
    DtmfInput,
    EndCall,
    EndReason,
    MachinePolicy,
    NoInput,
    Outcome,
    StateEntered,
    Transfer,
    UserTurn,
)
from media_nodes.metrics import MediaMetrics
from media_nodes.pipeline.call import CallIdentity, CallOptions, CallSession
from media_nodes.pipeline.node import MediaNode
from media_nodes.recording.store import LocalStore
from media_nodes.transports.port import Played
from media_nodes.tts.voice import Voice
from shared.bus import InProcessBus
from shared.events.models import EscalationRequested, IntentDetected
from shared.settings import load_settings

PHONE_RATE = 8000  # Twilio's; a call on the fakes may run at WebRTC's 16 kHz instead
FRAME_S = 0.02


def frame_samples(rate: int) -> int:
    return int(rate * FRAME_S)


CALLER_AMPLITUDE = 9000  # int16 peak of the caller's tones
AGENT_AMPLITUDE = 6000  # above the voice's leading-silence threshold


def tone(hz: float, ms: int, amplitude: int, rate: int = PHONE_RATE) -> npt.NDArray[np.int16]:
    t = np.arange(rate * ms // 1000) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


# ---- ASR --------------------------------------------------------------------------------------


class FakeAsr:
    """Hears a phrase in the tone it was said with (:meth:`tone_of`); silence is no words.

    Each transcription takes ``delay_s``; ``fail`` makes the next ones raise :class:`AsrError`.
    """

    device = "fake"
    FIRST_HZ = 400.0
    STEP_HZ = 150.0  # well apart after resampling
    MAX_HZ = 3300.0  # a phone line's band
    NOISE_HZ = 150.0  # below every phrase: no words

    def __init__(self, *, delay_s: float = 0.01) -> None:
        self.delay_s = delay_s
        self.fail = False
        self._phrases: list[str] = []
        self.heard: list[str] = []  # every transcript returned, in order

    def tone_of(self, text: str) -> float:
        if text not in self._phrases:
            self._phrases.append(text)
        hz = self.FIRST_HZ + self.STEP_HZ * self._phrases.index(text)
        assert hz <= self.MAX_HZ, "too many phrases for one call's fake ASR"
        return hz

    def _phrase_in(self, audio: npt.NDArray[np.float32]) -> str:
        if not len(audio) or float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < 0.02:
            return ""
        spectrum = np.abs(np.fft.rfft(audio))
        hz = float(np.argmax(spectrum[1:]) + 1) * SAMPLE_RATE / len(audio)
        index = round((hz - self.FIRST_HZ) / self.STEP_HZ)
        if 0 <= index < len(self._phrases):
            return self._phrases[index]
        return ""

    async def transcribe(self, audio: npt.NDArray[np.float32]) -> Transcript:
        started = time.perf_counter()
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise AsrError("transcription failed: the fake was told to fail")
        text = self._phrase_in(audio)
        self.heard.append(text)
        return Transcript(
            text=text,
            confidence=0.9 if text else None,
            duration_s=time.perf_counter() - started,
            audio_s=len(audio) / SAMPLE_RATE,
        )

    def warm_up(self) -> None:
        """Nothing to load."""

    def close(self) -> None:
        """Nothing to release."""


class FakeVad:
    """Speech where the window is loud."""

    def probability(
        self, window: npt.NDArray[np.float32], state: VadState
    ) -> tuple[float, VadState]:
        own = window[CONTEXT:].astype(np.float64)
        loud = float(np.sqrt(np.mean(own * own))) > 0.02
        return (0.95 if loud else 0.02), state


# ---- TTS --------------------------------------------------------------------------------------


class FakeTts:
    """Speaks ``ms_per_char`` of tone per character of text, in 20 ms chunks, the first after
    ``first_audio_delay_s``."""

    name = "fake"

    def __init__(
        self, *, ms_per_char: float = 2.0, first_audio_delay_s: float = 0.0, rate: int = PHONE_RATE
    ) -> None:
        # The call's rate: no resampling, the audio sent is exactly what was synthesized.
        self.sample_rate = rate
        self.ms_per_char = ms_per_char
        self.first_audio_delay_s = first_audio_delay_s
        self.spoken: list[str] = []  # every text synthesized, in order

    def samples_for(self, text: str) -> int:
        return round(len(text) * self.ms_per_char * self.sample_rate / 1000)

    async def synthesize(self, text: str) -> AsyncIterator[npt.NDArray[np.int16]]:
        self.spoken.append(text)
        if self.first_audio_delay_s:
            await asyncio.sleep(self.first_audio_delay_s)
        audio = tone(700.0, 1000, AGENT_AMPLITUDE, self.sample_rate)
        left = self.samples_for(text)
        while left > 0:
            n = min(left, frame_samples(self.sample_rate))
            yield audio[:n].copy()
            left -= n
            await asyncio.sleep(0)

    def warm_up(self) -> None:
        """Nothing to load."""


# ---- the phone line -----------------------------------------------------------------------------


@dataclass
class Sent:
    kind: Literal["media", "mark", "clear"]
    name: str = ""  # the mark's
    at: float = 0.0  # when it was sent
    plays_at: float = 0.0  # media: when the line starts playing it
    heard: bool = True  # media: played before any clear dropped it


@dataclass
class HeardPiece:
    """The frames one mark closed (a piece of an agent turn), and how many the caller heard."""

    mark: str
    frames: int
    heard_frames: int
    first_at: float  # when its first frame was sent


class FakeLine:
    """The audio port, playing what it is sent in real time, as Twilio does."""

    def __init__(self, rate: int = PHONE_RATE) -> None:
        self.rate = rate
        self.frame = frame_samples(rate)
        self.sent: list[Sent] = []
        self.closed = asyncio.Event()  # the agent hung up
        self.on_playback: Callable[[Played], bool] | None = None  # the call's; set by fake_call
        self.accepted_marks: list[str] = []  # echoes the call took as played
        self.unknown_marks: list[str] = []  # echoes it did not know (audio a clear dropped)
        self._play_until = 0.0  # when what is queued will have played
        self._queued: list[Sent] = []  # media not yet played
        self._echoes: dict[str, asyncio.TimerHandle] = {}

    async def play(self, pcm: npt.NDArray[np.int16]) -> None:
        assert len(pcm) == self.frame, "the playout sends 20 ms frames"
        now = time.monotonic()
        self._play_until = max(self._play_until, now)
        frame = Sent("media", at=now, plays_at=self._play_until)
        self._play_until += FRAME_S
        self.sent.append(frame)
        self._queued = [f for f in self._queued if f.plays_at > now]
        self._queued.append(frame)

    async def mark(self, name: str) -> None:
        now = time.monotonic()
        self.sent.append(Sent("mark", name=name, at=now))
        delay = max(0.0, self._play_until - now)
        self._echoes[name] = asyncio.get_running_loop().call_later(delay, self._echo, name)

    async def clear(self) -> None:
        now = time.monotonic()
        self.sent.append(Sent("clear", at=now))
        for frame in self._queued:
            if frame.plays_at >= now:
                frame.heard = False
        self._queued.clear()
        self._play_until = now
        # Twilio echoes the marks of the audio it dropped, over the socket: after this returns.
        loop = asyncio.get_running_loop()
        for name, handle in list(self._echoes.items()):
            handle.cancel()
            self._echoes[name] = loop.call_later(0, self._echo, name)

    async def close(self) -> None:
        self.closed.set()

    def _echo(self, name: str) -> None:
        self._echoes.pop(name, None)
        if self.on_playback is not None:
            known = self.on_playback(Played(name))
            (self.accepted_marks if known else self.unknown_marks).append(name)

    def stop(self) -> None:
        for handle in self._echoes.values():
            handle.cancel()
        self._echoes.clear()

    # ---- what happened ---------------------------------------------------------------------

    def kinds(self) -> list[str]:
        return [s.kind for s in self.sent]

    def clears(self) -> list[Sent]:
        return [s for s in self.sent if s.kind == "clear"]

    def pieces(self) -> list[HeardPiece]:
        """The frames sent between marks and clears, each run named by the mark that closed it
        ("" when a clear or the end of the call did: a piece cut off). A replayed piece counts
        again, under its new mark."""
        out: list[HeardPiece] = []
        frames: list[Sent] = []
        for item in [*self.sent, Sent("clear")]:
            if item.kind == "media":
                frames.append(item)
            elif frames or item.kind == "mark":
                heard = sum(f.heard for f in frames)
                first_at = frames[0].at if frames else item.at
                out.append(HeardPiece(item.name, len(frames), heard, first_at))
                frames = []
        return out

    def media_after(self, at: float) -> list[Sent]:
        return [s for s in self.sent if s.kind == "media" and s.at > at]


# ---- the dialogue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    text: str
    state: str | None = None  # the state it enters
    expecting: Literal["digits", "yes_no"] | None = None
    end_call: bool = False
    intent: str | None = None  # recognised in the turn answered (an intent.detected fact)
    escalate_to: str | None = None  # the call goes to a person: an escalation, then a transfer


@dataclass
class ScriptedDialogue:
    """Says ``greeting``, then answers each caller turn (its text, or the digits keyed) from
    ``replies``, else with ``otherwise``. Records what it was given (with the turn's index) and
    what was cut off."""

    greeting_text: str
    replies: dict[str, Reply] = field(default_factory=dict)
    otherwise: Reply = Reply("Sorry, could you say that again?")
    inputs: list[DialogueInput] = field(default_factory=list)
    turn_indexes: list[int] = field(default_factory=list)  # the call's index of each input
    interruptions: list[str] = field(default_factory=list)  # what was heard of each cut turn
    _state: str = "start"
    _expecting: Literal["digits", "yes_no"] | None = None

    @property
    def state(self) -> str:
        return self._state

    @property
    def agent_version(self) -> int | None:
        return None

    @property
    def expecting(self) -> Literal["digits", "yes_no"] | None:
        return self._expecting

    def greeting(self) -> AsyncIterator[AgentOutput]:
        return self._say(Reply(self.greeting_text), GREETING_TURN_INDEX)

    def handle(self, user_input: DialogueInput, *, turn_index: int) -> AsyncIterator[AgentOutput]:
        self.inputs.append(user_input)
        self.turn_indexes.append(turn_index)
        match user_input:
            case UserTurn(text=text):
                key = text
            case DtmfInput(digits=digits):
                key = digits
            case NoInput():
                key = ""
        return self._say(self.replies.get(key, self.otherwise), turn_index)

    async def _say(self, reply: Reply, turn_index: int) -> AsyncIterator[AgentOutput]:
        if reply.intent is not None:
            yield IntentDetected(turn_index=turn_index, intent=reply.intent, confidence=0.9)
        if reply.state is not None:
            self._state = reply.state
            yield StateEntered(reply.state)
        if reply.escalate_to is not None:
            yield EscalationRequested(reason="explicit_request", target=reply.escalate_to)
        self._expecting = reply.expecting
        for word in reply.text.split(" "):  # streamed a word at a time, as an LLM does
            yield AgentText(word + " ")
        if reply.escalate_to is not None:
            yield Transfer(reply.escalate_to)
        if reply.end_call:
            yield EndCall()

    def interrupted(self, heard_text: str) -> None:
        self.interruptions.append(heard_text)

    def fixed_texts(self) -> list[str]:
        return [self.greeting_text]

    def fork(self) -> ScriptedDialogue | None:
        return None  # no speculative replies: each test drives one path

    def machine_policy(self) -> MachinePolicy:
        return MachinePolicy(voicemail_message=None, screening_message=None)

    def finish(self, reason: EndReason) -> Outcome:
        return Outcome("resolved", summary=f"ended: {reason}")


@dataclass
class OneDialogue:
    """The dialogue factory: every call gets the one scripted session."""

    session: ScriptedDialogue

    async def new_session(
        self, *, tenant_id: str, agent_id: str, call_id: str, variables: dict[str, str]
    ) -> ScriptedDialogue:
        return self.session

    async def aclose(self) -> None:
        return None


# ---- a call over the fakes ---------------------------------------------------------------------

PayloadT = TypeVar("PayloadT", bound=BaseModel)


@dataclass
class FakeCall:
    session: CallSession
    line: FakeLine
    asr: FakeAsr
    tts: FakeTts
    dialogue: ScriptedDialogue
    node: MediaNode

    async def say(self, text: str, ms: int = 480) -> None:
        """The caller says ``text`` (``ms`` of its tone); the turn ends only after a pause."""
        await self._frames(tone(self.asr.tone_of(text), ms, CALLER_AMPLITUDE, self.line.rate))

    async def noise(self, ms: int) -> None:
        """A sound the VAD takes for speech and the ASR finds no words in (a cough, a door)."""
        await self._frames(tone(self.asr.NOISE_HZ, ms, CALLER_AMPLITUDE, self.line.rate))

    async def pause(self, ms: int = 600) -> None:
        """The caller is silent for ``ms`` (of stream time: fed as fast as the call takes it)."""
        await self._frames(np.zeros(self.line.rate * ms // 1000, dtype=np.int16))

    async def _frames(self, pcm: npt.NDArray[np.int16]) -> None:
        step = self.line.frame
        for start in range(0, len(pcm) - step + 1, step):
            frame = pcm[start : start + step]
            await self.session.on_audio(frame, time.monotonic())
            await asyncio.sleep(0)  # let the call's tasks (transcripts, playout) run

    async def press(self, digit: str) -> None:
        await self.session.on_dtmf(digit)

    def payloads(self, kind: type[PayloadT]) -> list[PayloadT]:
        return [e.payload for e in self.session.events.emitted if isinstance(e.payload, kind)]

    def counted(self, metric: str) -> float:
        return self.node.metrics.registry.get_sample_value(metric) or 0.0

    async def until(self, condition: Callable[[], object], timeout_s: float = 2.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached in {timeout_s} s; line sent {self.line.kinds()}")
            await asyncio.sleep(0.005)

    async def agent_speaks(self, since: int, timeout_s: float = 2.0) -> None:
        """Until the line has been sent agent audio after its first ``since`` messages."""
        await self.until(lambda: any(s.kind == "media" for s in self.line.sent[since:]), timeout_s)

    async def agent_done(self, timeout_s: float = 2.0) -> None:
        """Until the agent's turn has been played and marked, and the call listens again."""
        await self.until(lambda: not self.session._agent_busy(), timeout_s)


@contextlib.asynccontextmanager
async def fake_call(
    tmp_path: Path,
    dialogue: ScriptedDialogue,
    *,
    asr: FakeAsr | None = None,
    tts: FakeTts | None = None,
    rate: int = PHONE_RATE,
    record: bool = False,
    **options: Any,
) -> AsyncIterator[FakeCall]:
    """A started call on the fakes, its line at ``rate`` (Twilio's 8 kHz, or WebRTC's 16 kHz);
    ``options`` are :class:`CallOptions` fields. The caller hangs up when the block ends (the
    call is then finished and its events all emitted)."""
    asr = asr or FakeAsr()
    tts = tts or FakeTts(rate=rate)
    # The room-noise gate learns a floor from the caller's audio: with tones for speech it would
    # be testing itself, not the call logic.
    settings = load_settings(data_dir=tmp_path / "data", room_noise_gate=False)
    node = MediaNode(
        settings=settings,
        asr=asr,
        vad=FakeVad(),
        voice=Voice(tts),
        dialogue=OneDialogue(dialogue),
        bus=InProcessBus("fake-call"),
        store=LocalStore(tmp_path / "recordings"),
        metrics=MediaMetrics(),
    )
    line = FakeLine(rate)
    identity = CallIdentity(
        call_id="CAfake", tenant_id="tenant", agent_id="agent", stream_sid="MZ", record=record
    )
    session = CallSession(
        node,
        line,
        identity,
        hangup=line.close,
        options=CallOptions(**options),
    )
    line.on_playback = session.on_playback
    await session.start()
    try:
        yield FakeCall(session, line, asr, tts, dialogue, node)
    finally:
        await session.finish("caller_hung_up")
        line.stop()
