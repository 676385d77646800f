"""Who answered: a person, an answering machine, or a call-screening assistant.

The call feeds the watch what it hears: the callee's audio (for the beep), whether each VAD
window was speech (for the long greeting), and each transcript (for the phrases). The watch only
judges; :class:`media_nodes.pipeline.call.CallSession` acts on its verdicts.

Voicemail is judged on outbound calls only, and only while the call is young (``listen_ms``): a
beep, a voicemail phrase, or a first utterance that runs on past ``long_ms`` with no real pause
(a person says "Hello?" and waits; a machine talks on). Later in a call, or on a call the person
placed, those are what people do: a long sentence, "can I leave a message for her?". A
screening prompt is judged on every call in the same young window; after one, the window opens
again (the assistant may hand the call on to the person, or to their voicemail).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from media_nodes.audio.voicemail import (
    BeepDetector,
    GreetingTracker,
    screening_phrase,
    voicemail_phrase,
)

Evidence = Literal["beep", "phrase", "greeting"]


@dataclass(frozen=True)
class MachineHeard:
    evidence: Evidence
    detail: str  # the phrase heard, or what the rule saw


@dataclass
class AnsweringWatch:
    outbound: bool
    rate: int  # of the caller audio it hears: the transport's
    listen_ms: float = 30_000.0
    long_ms: float = 4500.0
    pause_ms: float = 800.0
    _since_ms: float = 0.0  # the young window opened (call time)
    _beeps: BeepDetector = field(init=False)
    _greeting: GreetingTracker | None = None
    _opening_done: bool = False
    _spoke: bool = False
    beep_ended_ms: float | None = None  # call time of the last beep's end

    def __post_init__(self) -> None:
        self._beeps = BeepDetector(self.rate)
        self._greeting = GreetingTracker(long_ms=self.long_ms, pause_ms=self.pause_ms)

    def young(self, now_ms: float) -> bool:
        return now_ms - self._since_ms < self.listen_ms

    def reopen(self, now_ms: float) -> None:
        """After a screening assistant: its person, or their voicemail, is next."""
        self._since_ms = now_ms
        self._beeps = BeepDetector(self.rate)

    def audio(
        self, pcm: npt.NDArray[np.int16], now_ms: float, *, after_verdict: bool
    ) -> MachineHeard | None:
        """Caller audio (at ``rate``) ending at call time ``now_ms``. Beeps are listened for
        while the call is young, and after a voicemail verdict for as long as the call waits."""
        if not self.outbound or not (after_verdict or self.young(now_ms)):
            return None
        ended = self._beeps.feed(pcm)
        if not ended:
            return None
        self.beep_ended_ms = now_ms  # within one frame of the detector's own time
        return MachineHeard("beep", "a steady tone")

    def speech(self, voiced: bool, ms: float, now_ms: float) -> MachineHeard | None:
        """One VAD window: only the callee's first utterance is measured."""
        if not self.outbound or self._opening_done or self._greeting is None:
            return None
        if not voiced and not self._spoke:
            return None  # nobody has spoken yet
        self._spoke = True
        if self._greeting.observe(voiced, ms):
            self._opening_done = True
            return MachineHeard("greeting", f"{self.long_ms / 1000:.1f} s of unbroken speech")
        if not voiced and self._greeting.silent_ms >= self.pause_ms:
            self._opening_done = True  # the first utterance ended short: a person's "Hello?"
        return None

    def voicemail_text(self, text: str, now_ms: float) -> MachineHeard | None:
        if not self.outbound or not self.young(now_ms):
            return None
        phrase = voicemail_phrase(text)
        return MachineHeard("phrase", phrase) if phrase else None

    def screening_text(self, text: str, now_ms: float) -> str | None:
        return screening_phrase(text) if self.young(now_ms) else None
