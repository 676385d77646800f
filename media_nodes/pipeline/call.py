"""One call, end to end: caller audio -> VAD -> turns -> ASR -> dialogue -> TTS -> paced audio.

Everything here runs on the event loop except model inference (threads). The caller's audio path
(:meth:`CallSession.on_audio`) never waits for a model: transcription, dialogue and synthesis run
in tasks, so the call keeps listening while it thinks and speaks, which is what makes barge-in and
speculative transcription possible.

The session works at its transport's rate (:class:`~media_nodes.transports.port.AudioPort`):
caller PCM arrives at it and is resampled once to the models' 16 kHz; agent speech is synthesized
straight to it. Nothing here knows about mu-law or 8 kHz phone lines.

Turn indices: the greeting is agent turn 0; caller turn *i* is answered by agent turn *i*.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from media_nodes.asr.engine import SAMPLE_RATE as MODEL_RATE
from media_nodes.asr.engine import AsrError, Transcript
from media_nodes.asr.unfinished import reads_unfinished
from media_nodes.audio.end_of_turn import WaitPolicy
from media_nodes.audio.resample import StreamResampler, to_float32
from media_nodes.audio.room import RoomNoise
from media_nodes.audio.turn import (
    NoiseDiscarded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
    TurnEvent,
)
from media_nodes.audio.vad import WINDOW_MS, StreamingVad
from media_nodes.dialogue.protocol import (
    GREETING_TURN_INDEX,
    AgentOutput,
    AgentText,
    DialogueInput,
    DialogueSession,
    DtmfInput,
    EndCall,
    EndReason,
    NoInput,
    Outcome,
    StateEntered,
    Transfer,
    UserTurn,
)
from media_nodes.memory import release_memory
from media_nodes.metrics import MediaMetrics
from media_nodes.pipeline.answering import AnsweringWatch, MachineHeard
from media_nodes.pipeline.backchannel import is_backchannel
from media_nodes.pipeline.caller_audio import CallerAudio
from media_nodes.pipeline.caller_speech import Heard, PendingSpeech
from media_nodes.pipeline.events import AgentActivity, CallEvents, SessionListener
from media_nodes.pipeline.latency import TurnTiming
from media_nodes.pipeline.node import MediaNode
from media_nodes.pipeline.playout import Piece, Playout, PlayoutTurn
from media_nodes.pipeline.transfer import TransferFailed, can_transfer, transfer
from media_nodes.pipeline.trial_reply import TrialReply
from media_nodes.pipeline.turn_wait import TurnWait
from media_nodes.recording.recorder import CallRecorder
from media_nodes.transports.port import AudioPort, Played
from media_nodes.tts.base import TtsError
from media_nodes.tts.sentences import SentenceSplitter
from media_nodes.tts.streaming import PieceAudio, synthesize_ahead
from shared.agents.dispositions import SCREENED, VOICEMAIL
from shared.cache.base import CacheUnavailable
from shared.cache.verdicts import MEDIA_NODE, decided_by, verdict
from shared.events.models import (
    TURN_TEXT_MAX_CHARS,
    CallEnded,
    CallStarted,
    DispositionSet,
    EscalationRequested,
    IntentDetected,
    SlotFilled,
    ToolCalled,
    TurnAgent,
    TurnUser,
)
from shared.settings import Settings

log = logging.getLogger(__name__)

PRE_ROLL_MS = 200  # audio before the detected speech start handed to ASR (soft onsets)
POST_ROLL_MS = 120  # and after the last voiced window


def bound_turn_text(text: str, metrics: MediaMetrics, call_id: str) -> str:
    """A turn's text cut to what an event may carry, counted (a sign of a runaway ASR or
    dialogue), so a call never fails on an oversized event and the pipeline never sees one."""
    if len(text) <= TURN_TEXT_MAX_CHARS:
        return text
    metrics.turns_cut.inc()
    log.warning("call %s: a %d-character turn cut to %d", call_id, len(text), TURN_TEXT_MAX_CHARS)
    return text[:TURN_TEXT_MAX_CHARS]


@dataclass(frozen=True)
class CallIdentity:
    call_id: str
    tenant_id: str
    agent_id: str
    stream_sid: str
    call_sid: str = ""
    from_number: str = ""
    to_number: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    record: bool = False
    channel: str = "twilio"
    direction: str = "inbound"  # "outbound": we placed the call (voicemail is judged)


BACKCHANNEL_WORDS = frozenset(Settings.model_fields["backchannel_words"].default)


@dataclass(frozen=True)
class CallOptions:
    endpoint_ms: int = 400
    end_of_turn_cap_ms: int = 1400  # no pause longer than this, whatever the model says
    speculative_ms: int = 160
    barge_in_min_speech_ms: int = 128  # speech over the agent that holds its audio
    backchannel_max_ms: int = 900  # held speech longer than this is a barge-in, whatever it says
    backchannel_words: frozenset[str] = BACKCHANNEL_WORDS
    dtmf_timeout_s: float = 1.2
    no_input_s: float = 8.0
    play_timeout_s: float = 60.0  # longest we wait for marks of one agent turn
    final_asr_timeout_s: float = 5.0
    playout_lead_s: float = 0.5  # agent audio queued at the transport ahead of real time
    machine_listen_s: float = 30.0  # how long into a call a machine or screener is judged
    beep_wait_s: float = 15.0  # longest wait for the beep before leaving a voicemail
    machine_quiet_s: float = 2.0  # a greeting followed by this much quiet has no beep to wait for


class CallSession:
    def __init__(
        self,
        node: MediaNode,
        port: AudioPort,
        identity: CallIdentity,
        *,
        hangup: Callable[[], Awaitable[None]],
        options: CallOptions | None = None,
        listener: SessionListener | None = None,
    ) -> None:
        settings = node.settings
        self.node = node
        self.identity = identity
        self.options = options or CallOptions(
            endpoint_ms=settings.endpoint_silence_ms,
            end_of_turn_cap_ms=settings.end_of_turn_cap_ms,
            speculative_ms=settings.speculative_asr_ms,
            barge_in_min_speech_ms=settings.barge_in_min_speech_ms,
            backchannel_max_ms=settings.backchannel_max_ms,
            backchannel_words=frozenset(w.lower() for w in settings.backchannel_words),
        )
        self._hangup = hangup
        self._listener = listener
        self.events = CallEvents(
            node.bus,
            tenant_id=identity.tenant_id,
            call_id=identity.call_id,
            listener=listener,
        )
        self.rate = port.rate
        self.recorder = CallRecorder(self.rate) if identity.record else None
        self.playout = Playout(
            port,
            lead_s=self.options.playout_lead_s,
            on_audio=self.recorder.agent if self.recorder else None,
        )
        self._vad = StreamingVad(node.vad)
        self._room = RoomNoise() if node.settings.room_noise_gate else None
        self._turns = TurnDetector(
            endpoint_ms=self.options.endpoint_ms, speculative_ms=self.options.speculative_ms
        )
        self._wait = TurnWait(
            node.end_of_turn,
            WaitPolicy(base_ms=self.options.endpoint_ms, cap_ms=self.options.end_of_turn_cap_ms),
        )
        self._to_models = StreamResampler(self.rate, MODEL_RATE)
        self._audio = CallerAudio()
        self._started_at = time.monotonic()
        self._dialogue: DialogueSession | None = None
        self._turn_index = 0
        self._response: asyncio.Task[None] | None = None
        self._agent_turn: PlayoutTurn | None = None
        self._agent_state: str | None = None
        self._speculative: tuple[int, asyncio.Task[Transcript]] | None = None
        self._trial: TrialReply | None = None  # the reply prepared for the speculative transcript
        self._dialogue_inputs = 0  # inputs handed to the dialogue: a fork older than these is stale
        self._transcribing: set[asyncio.Task[None]] = set()
        self._unanswered: list[str] = []  # caller text the dialogue has not yet seen
        self._pending = PendingSpeech()  # caller words waiting for the turn they belong to
        self._speech_over_agent = False
        # The caller's speech cut the agent and its turn has not been heard yet: if that turn
        # comes to nothing (noise, no words), the barge-in was a false one.
        self._barged_in = False
        self._dtmf = ""
        self._dtmf_task: asyncio.Task[None] | None = None
        self._no_input_task: asyncio.Task[None] | None = None
        self._end_reason: EndReason | None = None
        self._escalated = False
        self._finished = asyncio.Event()
        self._finishing = False
        self.recording_url: str | None = None
        self.outcome: Outcome | None = None
        self._watch = AnsweringWatch(
            outbound=identity.direction == "outbound",
            rate=self.rate,
            listen_ms=self.options.machine_listen_s * 1000,
        )
        # The call's machine verdict once one is seen: ours ("media_node:beep") or Twilio's
        # AMD's, whichever claimed the call first. From then on the dialogue is silent.
        self._machine: str | None = None
        # A long first utterance: a machine's greeting, or a screening assistant's prompt; its
        # words tell which. Meanwhile the agent is silent as it would be for a machine.
        self._suspected: MachineHeard | None = None
        self._screened_out = False
        self._beep = asyncio.Event()
        self._last_voiced_at = time.monotonic()
        self._voicemail: asyncio.Task[None] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def _ms(self, at: float | None = None) -> int:
        return max(0, int(((at or time.monotonic()) - self._started_at) * 1000))

    async def start(self) -> None:
        """Open the conversation and speak the greeting (cached audio: no synthesis wait)."""
        identity = self.identity
        self.node.metrics.calls.inc()
        self.node.metrics.active_calls.inc()
        try:
            self._dialogue = await self.node.dialogue.new_session(
                tenant_id=identity.tenant_id,
                agent_id=identity.agent_id,
                call_id=identity.call_id,
                variables=identity.variables,
            )
        finally:
            # Emitted once the agent is loaded, so it names the version that answers (and
            # still emitted when it cannot be: the call's end is recorded against a start).
            self.events.emit(
                CallStarted(
                    agent_id=identity.agent_id,
                    agent_version=self._dialogue.agent_version if self._dialogue else None,
                    channel=identity.channel,
                    from_number=identity.from_number,
                    to_number=identity.to_number,
                    twilio_call_sid=identity.call_sid or None,
                    stream_sid=identity.stream_sid,
                    node_id=self.node.node_id,
                )
            )
        timing = TurnTiming(turn_index=GREETING_TURN_INDEX, last_voiced_at=self._started_at)
        self._launch(self._respond(GREETING_TURN_INDEX, self._dialogue.greeting(), timing))

    async def shut_down(self) -> None:
        """The node is stopping and the grace period is over: hang up."""
        self._end_reason = self._end_reason or "shutdown"
        await self._hangup()

    @property
    def end_reason(self) -> EndReason | None:
        return self._end_reason

    @property
    def call_id(self) -> str:
        return self.identity.call_id

    def _activity(self, activity: AgentActivity) -> None:
        if self._listener is not None:
            self._listener(activity)

    # ---- inbound ------------------------------------------------------------------------------

    async def on_audio(self, pcm: npt.NDArray[np.int16], arrived_at: float) -> None:
        """One inbound frame (PCM at the transport's rate): record, detect speech, and react to
        turn changes."""
        if self.recorder is not None:
            self.recorder.caller(pcm)
        samples = to_float32(self._to_models.process(pcm))
        self._audio.append(samples, arrived_at)
        beep = self._watch.audio(pcm, self._ms(arrived_at), after_verdict=self._machine is not None)
        if beep is not None:
            self._beep.set()
            await self._machine_answered(beep)
        levels = self._room.levels(samples) if self._room is not None else None
        for i, probability in enumerate(self._vad.process(samples)):
            if self._room is not None and levels is not None:
                probability = self._room.gate(
                    probability,
                    levels[i],
                    turn_ms=self._turns.turn_ms,
                    over_agent=self._agent_busy(),
                )
            events = self._turns.push(probability)
            voiced = self._turns.in_speech and self._turns.last_voiced_ms == self._turns.now_ms
            if voiced:
                self._last_voiced_at = arrived_at
            greeting = self._watch.speech(voiced, WINDOW_MS, self._ms(arrived_at))
            if greeting is not None and self._machine is None:
                self._suspected = greeting
                await self._silence_agent()
            for event in events:
                await self._on_turn_event(event)
            if not self._machine_talks and self._turns.in_speech and self._agent_busy():
                await self._speech_over_agent_grew(self._turns.voiced_ms)
        if not self._turns.in_speech:
            self._audio.trim_before(self._audio.end_ms - 1000)  # keep a second of pre-roll

    @property
    def _machine_talks(self) -> bool:
        return self._machine is not None or self._suspected is not None

    async def _on_turn_event(self, event: TurnEvent) -> None:
        if self._machine_talks:
            # A machine talks: its words are kept (the transcript), nobody answers them.
            if isinstance(event, TurnEnded):
                self._end_caller_turn(event.start_ms, event.end_ms, answer=False)
            return
        match event:
            case SpeechStarted():
                self._cancel(self._no_input_task)
                if self._dialogue is not None:
                    self._turns.endpoint_ms = self._wait.base_ms(self._dialogue.expecting)
                self._speech_over_agent = self._agent_busy()
            case SpeechPaused(start_ms=start, end_ms=end):
                if not self._speech_over_agent or self.playout.held_at is not None:
                    self._start_speculative(start, end)
                if not self._speech_over_agent:
                    # Over the agent the full wait stands: "No, stop." must stay one barge-in,
                    # not a "No" that settles the hold and a "stop" that interrupts the reply.
                    self._wait.expect_words()
                    await self._apply_wait(self._wait.wait_ms)
                    self._wait.judge(
                        self._audio.slice(start - PRE_ROLL_MS, self._turns.now_ms),
                        self._apply_wait,
                    )
            case SpeechResumed():
                self._wait.cancel()
                self._drop_speculative()
            case NoiseDiscarded():
                self._wait.cancel()
                self._drop_speculative()
                if self._barged_in:  # the speech that cut the agent was only noise
                    self._barged_in = False
                    self._false_barge_in()
                if self.playout.held_at is not None:
                    await self._resume_agent("")
            case TurnEnded(start_ms=start, end_ms=end):
                self._wait.cancel()
                if self.playout.held_at is not None:
                    self._settle_hold(start, end)
                    return
                if self._speech_over_agent and self._agent_busy():
                    # A backchannel ("uh-huh") under the agent: too short to barge in, not a turn.
                    log.debug("call %s: backchannel ignored", self.identity.call_id)
                    self._drop_speculative()
                    return
                self._end_caller_turn(start, end)

    async def _apply_wait(self, wait_ms: int) -> None:
        """The end-of-turn verdict on the current pause came: it may end the turn now."""
        if self._finishing:
            return
        for event in self._turns.set_wait(wait_ms):
            await self._on_turn_event(event)

    def _span(self, start_ms: int, end_ms: int) -> np.ndarray:
        return self._audio.slice(start_ms - PRE_ROLL_MS, end_ms + POST_ROLL_MS)

    def _start_speculative(self, start_ms: int, end_ms: int) -> None:
        self._drop_speculative()
        task = asyncio.create_task(self.node.asr.transcribe(self._span(start_ms, end_ms)))
        self._speculative = (end_ms, task)
        task.add_done_callback(lambda done: self._words_heard(end_ms, done))
        task.add_done_callback(lambda done: self._try_reply(end_ms, done))

    def _words_heard(self, end_ms: int, transcribed: asyncio.Task[Transcript]) -> None:
        """The speculative transcript is in: the pause's wait is set by its words (longer when
        they break off mid-clause)."""
        if self._speculative != (end_ms, transcribed) or not self._turns.paused:
            return
        if transcribed.cancelled() or self._finishing:
            return
        failed = transcribed.exception() is not None  # then the ordinary wait stands
        self._wait.heard("" if failed else transcribed.result().text, self._apply_wait)

    def _try_reply(self, end_ms: int, transcribed: asyncio.Task[Transcript]) -> None:
        """The speculative transcript is in: prepare the reply to it while the wait runs."""
        if not self.node.settings.speculative_reply or self._speculative != (end_ms, transcribed):
            return
        if transcribed.cancelled() or transcribed.exception() is not None:
            return
        text = transcribed.result().text
        if reads_unfinished(text):
            return  # the turn holds for the rest of the sentence: nothing to answer yet
        quiet = not self._speech_over_agent and not self._agent_busy() and self._turns.paused
        if not text or not quiet or self._finishing or self._dialogue is None or self._unanswered:
            return
        if self._machine_talks or self._suspected is not None:
            return  # no reply is coming: the dialogue does not answer a machine
        fork = self._dialogue.fork()
        if fork is None:
            return
        self._drop_trial()
        self._trial = TrialReply(
            fork,
            text,
            turn_index=self._turn_index + 1,  # the turn this speech ends, once confirmed
            end_ms=end_ms,
            inputs_seen=self._dialogue_inputs,
            voice=self.node.voice,
            rate=self.rate,
        )

    def _drop_trial(self) -> None:
        if self._trial is not None:
            self._trial.drop()
            self._trial = None
            self.node.metrics.speculative_replies.labels("dropped").inc()

    def _take_trial(self, end_ms: int) -> TrialReply | None:
        """The prepared reply if it answers speech ending at ``end_ms``; any other is dropped."""
        if self._trial is not None and self._trial.end_ms == end_ms:
            trial, self._trial = self._trial, None
            return trial
        self._drop_trial()
        return None

    def _handle(self, index: int, user_input: DialogueInput) -> AsyncIterator[AgentOutput]:
        assert self._dialogue is not None
        self._dialogue_inputs += 1
        return self._dialogue.handle(user_input, turn_index=index)

    def _drop_speculative(self) -> None:
        if self._speculative is not None:
            self._speculative[1].cancel()
            self._speculative = None
        self._drop_trial()

    def _transcript_task(self, start_ms: int, end_ms: int) -> asyncio.Task[Transcript]:
        """The transcription of ``start_ms``..``end_ms``: the speculative one when it covers
        exactly that span, else a new one."""
        spec, self._speculative = self._speculative, None
        if spec is not None and spec[0] == end_ms:
            return spec[1]
        if spec is not None:
            spec[1].cancel()
        return asyncio.create_task(self.node.asr.transcribe(self._span(start_ms, end_ms)))

    def _end_caller_turn(self, start_ms: int, end_ms: int, *, answer: bool = True) -> None:
        """The caller finished: transcribe (or reuse the speculative transcript), then answer."""
        now = time.monotonic()
        self._turn_index += 1
        index = self._turn_index
        timing = TurnTiming(
            turn_index=index, last_voiced_at=self._audio.arrival_of(end_ms), confirmed_at=now
        )
        trial = self._take_trial(end_ms)
        asr_task = self._transcript_task(start_ms, end_ms)
        audio_start = self._ms(self._audio.arrival_of(start_ms))
        audio_end = self._ms(timing.last_voiced_at)
        self._audio.trim_before(end_ms)
        after_barge_in, self._barged_in = self._barged_in, False
        # Transcription lives outside the response task: a barge-in may cancel the answer but
        # never what the caller said.
        heard = asyncio.create_task(
            self._transcribed(
                index, asr_task, audio_start, audio_end, timing, after_barge_in=after_barge_in
            )
        )
        self._transcribing.add(heard)
        heard.add_done_callback(self._transcribing.discard)
        if answer:
            self._launch(self._answer(index, heard, timing, trial))
        elif trial is not None:
            trial.drop()
            self.node.metrics.speculative_replies.labels("dropped").inc()

    async def _transcribed(
        self,
        index: int,
        asr_task: asyncio.Task[Transcript],
        start_ms: int,
        end_ms: int,
        timing: TurnTiming,
        *,
        after_barge_in: bool = False,
    ) -> None:
        try:
            transcript = await asr_task
        except AsrError as exc:
            self.node.metrics.asr_errors.inc()
            log.warning("call %s turn %d: %s", self.identity.call_id, index, exc)
            await self._judged(index, "", start_ms, timing)
            return
        timing.asr_s = transcript.duration_s
        if transcript.text:
            said = Heard(transcript.text, start_ms, max(end_ms, start_ms), transcript.confidence)
            self._emit_caller_turn(index, self._pending.into(said))
            self._unanswered.append(transcript.text)
        elif after_barge_in:
            self._false_barge_in()
        await self._judged(index, transcript.text, start_ms, timing)

    async def _judged(self, index: int, text: str, start_ms: int, timing: TurnTiming) -> None:
        """What the callee's words say of who answered: a screening assistant (told who is
        calling, instead of the dialogue answering), a machine, or - for a long first
        utterance that was neither - a machine all the same."""
        if self._finishing or self._machine is not None:
            return
        screening = self._watch.screening_text(text, start_ms) if text else None
        if screening is not None:
            self._suspected = None
            self._unanswered.clear()
            self._launch(self._screened(index, screening, timing))
            return
        machine = (self._watch.voicemail_text(text, start_ms) if text else None) or self._suspected
        if machine is not None:
            await self._machine_answered(machine)

    def _emit_caller_turn(self, index: int, heard: Heard) -> None:
        self.events.emit(
            TurnUser(
                turn_index=index,
                text=self._bounded(heard.text),
                start_ms=heard.start_ms,
                end_ms=heard.end_ms,
                confidence=heard.confidence,
            )
        )
        self._activity(AgentActivity("thinking"))

    async def _answer(
        self,
        index: int,
        heard: asyncio.Task[None],
        timing: TurnTiming,
        trial: TrialReply | None = None,
    ) -> None:
        try:
            await asyncio.shield(heard)
            if not self._unanswered or self._machine_talks:
                return  # noise, or nothing intelligible: keep listening (or a machine talks)
            assert self._dialogue is not None
            text, self._unanswered = " ".join(self._unanswered), []
            if trial is not None:
                outputs = await self._adopt(trial, index, text)
                prepared, trial = trial, None
                if outputs is not None:
                    await self._respond(index, outputs, timing, ready=prepared.first_audio)
                    return
            await self._respond(index, self._handle(index, UserTurn(text)), timing)
        finally:
            if trial is not None:  # not reached: the turn was noise, or this task was cancelled
                trial.drop()
                self.node.metrics.speculative_replies.labels("dropped").inc()

    async def _adopt(
        self, trial: TrialReply, index: int, text: str
    ) -> AsyncIterator[AgentOutput] | None:
        """The prepared reply, if it answers what turn ``index`` turned out to be, with the
        session the dialogue is now in; else None (and the trial is forgotten)."""
        stale = trial.inputs_seen != self._dialogue_inputs or trial.turn_index != index
        if trial.text != text or stale:
            trial.drop()
            self.node.metrics.speculative_replies.labels("dropped").inc()
            return None
        outputs = await trial.adopt()
        if outputs is None:
            self.node.metrics.speculative_replies.labels("refused").inc()
            return None
        self._dialogue = trial.session
        self._dialogue_inputs += 1
        self.node.metrics.speculative_replies.labels("used").inc()
        return outputs

    def on_dtmf(self, digit: str) -> Awaitable[None]:
        return self._on_dtmf(digit)

    async def _on_dtmf(self, digit: str) -> None:
        """Keypad: interrupts the agent; digits are collected until '#' or a short pause."""
        self._cancel(self._no_input_task)
        if self._agent_busy():
            await self._barge_in(by_speech=False)
        self._cancel(self._dtmf_task)
        if digit == "#" and self._dtmf:
            self._flush_dtmf()
            return
        self._dtmf += digit
        self._dtmf_task = asyncio.create_task(self._dtmf_after_pause())

    async def _dtmf_after_pause(self) -> None:
        await asyncio.sleep(self.options.dtmf_timeout_s)
        self._dtmf_task = None
        self._flush_dtmf()

    def _flush_dtmf(self) -> None:
        digits, self._dtmf = self._dtmf, ""
        if not digits:
            return
        self._turn_index += 1
        index = self._turn_index
        now = self._ms()
        self.events.emit(
            TurnUser(
                turn_index=index,
                text=self._bounded(digits),
                start_ms=now,
                end_ms=now,
                source="dtmf",
            )
        )
        self._activity(AgentActivity("thinking"))
        if self._dialogue is not None and not self._finishing:
            timing = TurnTiming(turn_index=index, last_voiced_at=time.monotonic())
            timing.confirmed_at = timing.last_voiced_at
            self._launch(self._respond(index, self._handle(index, DtmfInput(digits)), timing))

    def on_playback(self, event: Played) -> bool:
        """The transport's playback progress; False for a mark this call does not count."""
        return self.playout.on_playback(event)

    # ---- agent turns --------------------------------------------------------------------------

    def _agent_busy(self) -> bool:
        return (self._response is not None and not self._response.done()) or self.playout.speaking

    def _launch(self, coro: Awaitable[None]) -> None:
        """Start an agent response, replacing any previous one (it has been barged or is done)."""
        if self._response is not None and not self._response.done():
            self._response.cancel()
        self._response = asyncio.ensure_future(coro)

    async def _respond(
        self,
        index: int,
        outputs: AsyncIterator[AgentOutput],
        timing: TurnTiming,
        *,
        ready: Mapping[str, asyncio.Task[list[npt.NDArray[np.int16]]]] | None = None,
    ) -> None:
        """Stream dialogue text -> sentences -> TTS -> paced audio, all three overlapping."""
        turn = PlayoutTurn(index=index)
        self._agent_turn = turn
        started = self._ms()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        audio: asyncio.Queue[PieceAudio[Piece] | None] = asyncio.Queue()
        actions: list[EndCall | Transfer] = []
        timing.dialogue_started_at = time.monotonic()

        async def produce() -> None:
            splitter = SentenceSplitter()
            try:
                async for output in outputs:
                    if isinstance(output, AgentText):
                        if timing.first_text_at is None:
                            timing.first_text_at = time.monotonic()
                        for sentence in splitter.push(output.text):
                            sentences.put_nowait(sentence)
                    else:
                        if isinstance(output, EndCall | Transfer):
                            actions.append(output)
                        self._on_output(output)
                rest = splitter.flush()
                if rest:
                    sentences.put_nowait(rest)
            finally:
                sentences.put_nowait(None)

        def new_piece(text: str) -> Piece:
            if timing.tts_started_at is None:
                timing.tts_started_at = time.monotonic()
            return self.playout.new_piece(turn, text)

        def on_audio(piece: Piece, pcm: npt.NDArray[np.int16]) -> None:
            if timing.tts_first_audio_at is None:
                timing.tts_first_audio_at = time.monotonic()
            piece.synthesized += len(pcm)

        def on_error(exc: TtsError) -> None:
            self.node.metrics.tts_errors.inc()
            log.warning("call %s: %s", self.identity.call_id, exc)

        async def play() -> None:
            while (item := await audio.get()) is not None:
                piece, pcm = item
                if pcm is None:
                    await self.playout.finish_piece(turn, piece)
                    continue
                speaking = turn.first_frame_at is not None
                await self.playout.send(turn, piece, pcm)
                if not speaking and turn.first_frame_at is not None:
                    self._activity(AgentActivity("speaking"))
                if not timing.recorded and turn.first_frame_at is not None:
                    timing.first_frame_at = turn.first_frame_at
                    if index > 0:
                        self.events.emit(timing.observe(self.node.metrics, self.identity.call_id))
                    else:
                        timing.recorded = True

        async with asyncio.TaskGroup() as group:
            group.create_task(produce())
            group.create_task(
                synthesize_ahead(
                    self.node.voice,
                    self.rate,
                    sentences,
                    audio,
                    new_piece=new_piece,
                    on_audio=on_audio,
                    on_error=on_error,
                    ready=ready,
                )
            )
            group.create_task(play())
        played = await self.playout.wait_played(self.options.play_timeout_s)
        if not played:
            log.warning("call %s: marks of turn %d never came back", self.identity.call_id, index)
        if turn.first_frame_at is not None:
            self._activity(AgentActivity("listening"))
        if turn.pieces:
            self._emit_agent_turn(turn, started, turn.planned_text(), interrupted=False)
            self.node.metrics.reply_gap.observe(turn.longest_gap_s)
            if turn.longest_gap_s > 0.1:
                log.warning(
                    "call %s turn %d: %.0f ms gap inside the reply",
                    self.identity.call_id,
                    index,
                    turn.longest_gap_s * 1000,
                )
        self._agent_turn = None
        for action in actions:
            await self._act(action)
        if not actions and not self._finishing:
            self._no_input_task = asyncio.create_task(self._no_input_after_silence())

    def _bounded(self, text: str) -> str:
        return bound_turn_text(text, self.node.metrics, self.identity.call_id)

    def _emit_agent_turn(
        self, turn: PlayoutTurn, started_ms: int, heard: str, *, interrupted: bool
    ) -> None:
        self.events.emit(
            TurnAgent(
                turn_index=turn.index,
                text=self._bounded(heard),
                planned_text=self._bounded(turn.planned_text()) if interrupted else None,
                start_ms=started_ms,
                end_ms=max(self._ms(), started_ms),
                interrupted=interrupted,
                state=self._agent_state,
            )
        )

    def _on_output(self, output: AgentOutput) -> None:
        match output:
            case StateEntered(state=state):
                self._agent_state = state
            case EscalationRequested():
                self._escalated = True
                self.events.emit(output)
            case IntentDetected() | SlotFilled() | ToolCalled():
                self.events.emit(output)
            case Transfer():
                if not self._escalated:
                    self._escalated = True
                    self.events.emit(EscalationRequested(reason="other", target=output.target))
            case Outcome():
                self.outcome = output
            case EndCall() | AgentText():
                pass

    async def _act(self, action: EndCall | Transfer) -> None:
        """After the agent's words were heard: hang up, or hand the call to a human."""
        if isinstance(action, Transfer):
            settings, call_sid = self.node.settings, self.identity.call_sid
            if can_transfer(settings, call_sid):
                try:
                    await transfer(settings, call_sid, action.target)
                except TransferFailed as exc:
                    log.error("call %s: %s", self.identity.call_id, exc)
            else:
                log.info(
                    "call %s: no Twilio credentials, transfer to %s not placed",
                    self.identity.call_id,
                    action.target,
                )
        self._end_reason = "transferred" if isinstance(action, Transfer) else "agent_ended"
        await self._hangup()

    async def _no_input_after_silence(self) -> None:
        await asyncio.sleep(self.options.no_input_s)
        if self._dialogue is None or self._finishing or self._turns.in_speech:
            return
        if self._machine_talks:
            return
        self._turn_index += 1
        index = self._turn_index
        timing = TurnTiming(turn_index=index)
        self._no_input_task = None
        self._launch(self._respond(index, self._handle(index, NoInput()), timing))

    async def _speech_over_agent_grew(self, voiced_ms: int) -> None:
        """The caller talks over the agent: hold its audio at once; past the longest
        backchannel it is a barge-in whatever the words turn out to be."""
        if self.playout.held_at is None:
            if voiced_ms >= self.options.barge_in_min_speech_ms:
                await self.playout.hold()
                if self.recorder is not None:
                    self.recorder.cut_agent()
                log.info("call %s: agent held for the caller", self.identity.call_id)
        elif voiced_ms >= self.options.backchannel_max_ms:
            await self._barge_in()

    def _settle_hold(self, start_ms: int, end_ms: int) -> None:
        """The caller stopped while the agent was held: backchannel (resume) or barge-in?"""
        asr_task = self._transcript_task(start_ms, end_ms)
        settle = asyncio.create_task(self._settle(asr_task, start_ms, end_ms))
        self._transcribing.add(settle)
        settle.add_done_callback(self._transcribing.discard)

    async def _settle(self, asr_task: asyncio.Task[Transcript], start_ms: int, end_ms: int) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(asr_task)
        failed = asr_task.cancelled() or asr_task.exception() is not None
        said = "" if failed else asr_task.result().text
        held = self.playout.held_at is not None
        if held and not self._finishing and not failed:
            if is_backchannel(said, self.options.backchannel_words):
                # Not a turn, but the caller's words all the same: kept for the next turn.
                start, end = (self._ms(self._audio.arrival_of(ms)) for ms in (start_ms, end_ms))
                confidence = asr_task.result().confidence
                self._pending.hold(Heard(said, start, max(start, end), confidence))
                await self._resume_agent(said)
                return
        if self._finishing:  # the call ended while we listened: keep the words, answer nothing
            self._turn_index += 1
            start, end = (self._ms(self._audio.arrival_of(ms)) for ms in (start_ms, end_ms))
            timing = TurnTiming(turn_index=self._turn_index)
            await self._transcribed(self._turn_index, asr_task, start, end, timing)
            return
        if held:
            await self._barge_in()
        # A barge-in (now, or already for speech too long to be a backchannel): the caller's
        # turn, with its transcript ready.
        self._speculative = (end_ms, asr_task)
        self._end_caller_turn(start_ms, end_ms)

    async def _resume_agent(self, said: str) -> None:
        log.info("call %s: backchannel %r, the agent goes on", self.identity.call_id, said)
        self.node.metrics.backchannels.inc()
        await self.playout.resume(self._agent_turn)

    def _false_barge_in(self) -> None:
        self.node.metrics.false_barge_ins.inc()
        log.info("call %s: false barge-in (its turn came to nothing)", self.identity.call_id)

    async def _barge_in(self, *, by_speech: bool = True) -> None:
        """The caller talks over the agent: silence it now, keep only what was heard."""
        turn = self._agent_turn
        held_at = self.playout.held_at
        if held_at is not None or self._agent_busy():
            self.node.metrics.barge_ins.inc()
            self._barged_in = by_speech
        heard = self.playout.heard_text(turn, at=held_at) if turn is not None else ""
        if held_at is None and self.playout.speaking:
            await self.playout.clear()
            if self.recorder is not None:
                self.recorder.cut_agent()
        response = self._response
        self._response = None
        if response is not None and not response.done():
            response.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await response
        if held_at is not None:
            self.playout.forget()  # a real barge-in: the held audio is never played
        if turn is not None and turn.pieces:
            if self._dialogue is not None:
                self._dialogue_inputs += 1
                self._dialogue.interrupted(heard)
            self._emit_agent_turn(turn, self._ms(turn.started_at), heard, interrupted=True)
        self._agent_turn = None
        self._speech_over_agent = False
        if turn is not None and turn.first_frame_at is not None:
            self._activity(AgentActivity("listening"))
        log.info(
            "call %s: barge-in %d ms into the caller's speech, heard %r",
            self.identity.call_id,
            self._turns.now_ms - self._turns.speech_start_ms,
            heard,
        )

    @staticmethod
    def _cancel(task: asyncio.Task[None] | None) -> None:
        if task is not None and not task.done():
            task.cancel()

    # ---- answering machines and screening assistants ---------------------------------------

    async def _machine_answered(self, heard: MachineHeard) -> None:
        """A machine answered: claim the call's one verdict, silence the dialogue, and - if the
        verdict is ours - leave the agent's message after the beep or hang up."""
        if self._machine is not None or self._finishing:
            return
        mine = verdict(MEDIA_NODE, heard.evidence)
        self._machine = mine  # set before the claim's await: nothing answers in between
        call_id = self.identity.call_id
        log.info("call %s: answering machine (%s: %s)", call_id, heard.evidence, heard.detail)
        try:
            decided = await self.node.verdicts.claim(
                self.identity.call_sid or self.identity.call_id, mine
            )
        except CacheUnavailable as exc:
            # Nothing can claim the call now, Twilio's callback included: our evidence stands.
            log.warning("call %s: machine verdict not shared: %s", self.identity.call_id, exc)
            decided = mine
        self._machine = decided
        self._suspected = None
        await self._silence_agent()
        if decided_by(decided) != MEDIA_NODE:
            # Twilio's AMD claimed the call first: its callback acts (its new TwiML ends this
            # stream); the dialogue stays silent until then.
            log.info("call %s: %s decided first", self.identity.call_id, decided)
            return
        self._voicemail = asyncio.create_task(self._leave_voicemail())

    async def _silence_agent(self) -> None:
        self._cancel(self._no_input_task)
        if self._agent_busy() or self.playout.held_at is not None:
            await self._barge_in()

    async def _leave_voicemail(self) -> None:
        assert self._dialogue is not None
        message = self._dialogue.machine_policy().voicemail_message
        if message is not None:
            await self._wait_for_beep()
            if self._finishing:
                return
            self._turn_index += 1
            timing = TurnTiming(turn_index=self._turn_index, recorded=True)  # not a reply
            self._response = asyncio.ensure_future(
                self._respond(self._turn_index, _spoken(message), timing)
            )
            with contextlib.suppress(asyncio.CancelledError):
                await self._response
        self._end_reason = "answering_machine"
        await self._hangup()

    async def _wait_for_beep(self) -> None:
        """Until the beep (the machine records from there), or - for a greeting with none -
        until the callee has been quiet for a while, but never longer than ``beep_wait_s``."""
        deadline = time.monotonic() + self.options.beep_wait_s
        while time.monotonic() < deadline and not self._finishing and not self._beep.is_set():
            quiet_s = time.monotonic() - self._last_voiced_at
            if not self._turns.in_speech and quiet_s >= self.options.machine_quiet_s:
                return
            await asyncio.sleep(0.02)

    async def _screened(self, index: int, phrase: str, timing: TurnTiming) -> None:
        """A call-screening assistant asks who is calling: tell it (then listen for the person
        or their voicemail), or hang up, per the agent's setting."""
        assert self._dialogue is not None
        log.info("call %s: call screening (%r)", self.identity.call_id, phrase)
        self._watch.reopen(self._ms())
        message = self._dialogue.machine_policy().screening_message
        if message is None:
            self._screened_out = True
            self._end_reason = "answering_machine"
            await self._hangup()
            return
        await self._respond(index, _spoken(message), timing)

    async def _machine_outcome(self) -> Outcome | None:
        """The disposition a machine gives the call, whoever decided: the verdict claimed here,
        or one Twilio's AMD claimed while this node heard nothing conclusive."""
        found = self._machine
        if found is None and self._watch.outbound and self.identity.call_sid:
            try:
                found = await self.node.verdicts.get(self.identity.call_sid)
            except CacheUnavailable as exc:
                log.warning("call %s: machine verdict unknown: %s", self.identity.call_id, exc)
        if found is not None:
            return Outcome(disposition=VOICEMAIL, summary=f"An answering machine ({found}).")
        if self._screened_out:
            return Outcome(disposition=SCREENED, summary="A call-screening assistant answered.")
        return None

    # ---- the end ------------------------------------------------------------------------------

    async def finish(self, reason: EndReason) -> None:
        """The call is over (hang-up, socket drop, agent end, shutdown): save everything."""
        if self._finishing:
            await self._finished.wait()
            return
        self._finishing = True
        reason = self._end_reason or reason
        self._end_reason = reason
        try:
            await self._wrap_up(reason)
        finally:
            self.node.metrics.active_calls.dec()
            self._finished.set()
        await release_memory()

    async def _wrap_up(self, reason: EndReason) -> None:
        self._cancel(self._no_input_task)
        self._cancel(self._voicemail)
        self._cancel(self._dtmf_task)
        self._flush_dtmf()
        turn = self._agent_turn
        held_at = self.playout.held_at
        if turn is not None and turn.pieces and (self.playout.speaking or held_at is not None):
            heard = self.playout.heard_text(turn, at=held_at)
            self._emit_agent_turn(turn, self._ms(turn.started_at), heard, interrupted=True)
            self._agent_turn = None
        if self._response is not None and not self._response.done():
            self._response.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._response
        self.playout.forget()
        await self._save_unfinished_speech()
        if self._transcribing:
            await asyncio.wait(set(self._transcribing), timeout=self.options.final_asr_timeout_s)
        unanswered = self._pending.take()
        if unanswered is not None:  # words no later turn took in (a last "okay")
            self._turn_index += 1
            self._emit_caller_turn(self._turn_index, unanswered)
        outcome = self._dialogue.finish(reason) if self._dialogue is not None else None
        outcome = await self._machine_outcome() or outcome or self.outcome or Outcome("abandoned")
        self.outcome = outcome
        self.events.emit(
            DispositionSet(
                disposition=outcome.disposition, summary=outcome.summary, slots=outcome.slots
            )
        )
        if self.recorder is not None:
            try:
                key = f"{self.identity.tenant_id}/{self.identity.call_id}.wav"
                self.recording_url = await self.node.store.save(
                    key, self.recorder.wav(), "audio/wav"
                )
            except Exception as exc:  # storage down: the call's data still gets saved
                log.error("call %s: recording not saved: %s", self.identity.call_id, exc)
        self.events.emit(
            CallEnded(reason=reason, duration_ms=self._ms(), recording_url=self.recording_url)
        )
        await self.events.close()

    async def _save_unfinished_speech(self) -> None:
        """The caller was mid-sentence when the call ended: transcribe what we have."""
        self._drop_speculative()
        if not self._turns.in_speech or self._turns.voiced_ms < self._turns.min_speech_ms:
            return
        start, end = self._turns.speech_start_ms, self._turns.last_voiced_ms
        self._turns.reset()
        self._turn_index += 1
        timing = TurnTiming(turn_index=self._turn_index)
        task = asyncio.create_task(self.node.asr.transcribe(self._span(start, end)))
        start_ms = self._ms(self._audio.arrival_of(start))
        end_ms = self._ms(self._audio.arrival_of(end))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._transcribed(self._turn_index, task, start_ms, end_ms, timing),
                self.options.final_asr_timeout_s,
            )


async def _spoken(text: str) -> AsyncIterator[AgentOutput]:
    """Fixed words for the agent to say, outside the dialogue (voicemail, screening)."""
    yield AgentText(text)
