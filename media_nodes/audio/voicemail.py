"""Answering machines, told apart from people in the media node: the beep, a long uninterrupted
greeting, and what voicemail and call-screening prompts say.

The beep detector is deterministic signal processing, at the call's rate: each 40 ms frame (Hann
window) is correlated with a grid of tones, Goertzel-style (one DFT bin per tone), and the best
bin's share of the frame's energy says how pure a tone the frame is. A voicemail beep is one
steady tone (400-2500 Hz) for a few hundred milliseconds; speech spreads its energy over
harmonics and glides in pitch, so it never holds one bin that purely for that long.

media_nodes/pipeline/answering.py applies them to live calls; whether they or Twilio's AMD
(functions/voice/amd.py) decide for a call is settled by one claim (shared/cache/verdicts.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt

FRAME_MS = 40  # bins 25 Hz apart
HOP_MS = 20
TONES_HZ = np.arange(400.0, 2500.0, 10.0)
MIN_PURITY = 0.7  # the best bin's share of the frame's energy (1.0 = a pure tone)
MIN_BEEP_MS = 160
MAX_DRIFT_HZ = 30.0  # a beep's frequency stays put
MIN_LEVEL = 100.0  # RMS of the frame (int16 scale, about -50 dBFS): below is silence


@dataclass(frozen=True)
class _ToneGrid:
    """The window and tone basis for one sample rate (the call's: 8 or 16 kHz)."""

    rate: int
    frame: int
    hop: int
    window: npt.NDArray[np.float64]
    norm: float
    basis: npt.NDArray[np.complex128]


@lru_cache(maxsize=4)
def _grid(rate: int) -> _ToneGrid:
    frame, hop = rate * FRAME_MS // 1000, rate * HOP_MS // 1000
    window = np.hanning(frame)
    norm = float(window.sum() ** 2 / (2 * (window**2).sum()))
    basis = np.exp(-2j * np.pi * np.outer(TONES_HZ, np.arange(frame)) / rate)
    return _ToneGrid(rate, frame, hop, window, norm, basis)


def tone_of(frame: npt.NDArray[np.float64], rate: int) -> tuple[float, float]:
    """(frequency, purity) of the strongest tone in one 40 ms frame at ``rate``."""
    grid = _grid(rate)
    windowed = frame * grid.window
    energy = float(np.dot(windowed, windowed))
    if energy <= 0.0:
        return 0.0, 0.0
    power = np.abs(grid.basis @ windowed) ** 2
    best = int(np.argmax(power))
    return float(TONES_HZ[best]), float(power[best] / energy / grid.norm)


@dataclass
class BeepDetector:
    """Feed int16 audio at ``rate`` in any chunk size; :meth:`feed` returns the time (ms from
    the first sample) at which a beep ended, once per beep."""

    rate: int
    _pending: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    _position: int = 0  # samples consumed (start of _pending)
    _run_frames: int = 0
    _run_hz: float = 0.0
    _reported: bool = False

    def feed(self, pcm: npt.NDArray[np.int16]) -> list[float]:
        grid = _grid(self.rate)
        frame_n, hop = grid.frame, grid.hop
        self._pending = np.concatenate([self._pending, pcm.astype(np.float64)])
        ended: list[float] = []
        min_frames = 1 + (MIN_BEEP_MS * self.rate // 1000 - frame_n) // hop
        while len(self._pending) >= frame_n:
            frame = self._pending[:frame_n]
            level = float(np.sqrt(np.mean(frame**2)))
            hz, purity = tone_of(frame, self.rate) if level >= MIN_LEVEL else (0.0, 0.0)
            tonal = purity >= MIN_PURITY and (
                self._run_frames == 0 or abs(hz - self._run_hz) <= MAX_DRIFT_HZ
            )
            if tonal:
                if self._run_frames == 0:
                    self._run_hz = hz
                self._run_frames += 1
            else:
                if self._run_frames >= min_frames and not self._reported:
                    ended.append((self._position + frame_n - hop) * 1000 / self.rate)
                self._run_frames = 1 if purity >= MIN_PURITY else 0
                self._run_hz = hz
                self._reported = False
            self._pending = self._pending[hop:]
            self._position += hop
        return ended


@dataclass
class GreetingTracker:
    """A person answers with a short 'Hello?' and waits; a machine talks on. True once the
    callee has spoken ``long_ms`` with no pause of ``pause_ms`` since the call was answered."""

    long_ms: float = 4500.0
    pause_ms: float = 800.0
    _speech_ms: float = 0.0
    _silence_ms: float = 0.0

    def observe(self, speech: bool, ms: float) -> bool:
        if speech:
            self._speech_ms += self._silence_ms + ms  # short pauses inside a greeting count
            self._silence_ms = 0.0
        else:
            self._silence_ms += ms
            if self._silence_ms >= self.pause_ms:
                self._speech_ms = 0.0
        return self._speech_ms >= self.long_ms

    @property
    def silent_ms(self) -> float:
        return self._silence_ms


_VOICEMAIL = re.compile(
    r"\b(leave (me )?(a |your )?(brief |short )?(message|name and number)|after the (tone|beep)"
    r"|at the (tone|beep)|(not|unable to) (available|come to the phone|take your call)"
    r"|can'?t (come to|get to|answer) the phone|record your message|voice ?mail|mailbox"
    r"|is not available|has reached|you have reached|you'?ve reached)\b",
    re.IGNORECASE,
)
_SCREENING = re.compile(
    r"\b(screening service|call screen(ing)?|being screened|state your name|say your name"
    r"|record your name"
    r"|who('s| is) calling|why you('re| are) calling|reason for (your |the )?call"
    r"|google assistant)\b",
    re.IGNORECASE,
)


def voicemail_phrase(text: str) -> str | None:
    """The words of ``text`` that only an answering machine says, if any."""
    found = _VOICEMAIL.search(text)
    return found.group(0) if found else None


def screening_phrase(text: str) -> str | None:
    """The words of ``text`` of a call-screening prompt (the callee's assistant answering).
    Not "the person you are calling": carriers' voicemail greetings start that way too."""
    found = _SCREENING.search(text)
    return found.group(0) if found else None
