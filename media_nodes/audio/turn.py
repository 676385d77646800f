"""Turn endpointing: VAD probabilities in, caller-turn events out.

Times are milliseconds of caller audio since the stream started (not wall-clock), so the logic is
deterministic. The detector says when the caller *pauses* (start a speculative transcription),
*resumes* (throw that transcription away) and when the pause is long enough to end the turn.
How long is "long enough" may change during a pause: :meth:`TurnDetector.set_wait` applies an
end-of-turn verdict (it lasts until the caller speaks again), and ``endpoint_ms`` may be changed
between turns (what the dialogue expects next).
Hysteresis (a higher threshold to start speech than to keep it) stops flicker on soft syllables.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_nodes.audio.vad import WINDOW_MS


@dataclass(frozen=True)
class SpeechStarted:
    start_ms: int


@dataclass(frozen=True)
class SpeechPaused:
    """Silence long enough to transcribe speculatively."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class SpeechResumed:
    """The caller went on after a pause: a speculative transcript is stale."""

    start_ms: int


@dataclass(frozen=True)
class TurnEnded:
    """The caller finished a turn spanning ``start_ms``..``end_ms`` (last voiced window)."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class NoiseDiscarded:
    """Too little speech to be a turn (a click, a cough)."""

    start_ms: int
    end_ms: int


TurnEvent = SpeechStarted | SpeechPaused | SpeechResumed | TurnEnded | NoiseDiscarded


class TurnDetector:
    def __init__(
        self,
        *,
        endpoint_ms: int,
        speculative_ms: int,
        min_speech_ms: int = 96,
        start_threshold: float = 0.5,
        end_threshold: float = 0.35,
    ) -> None:
        self.endpoint_ms = endpoint_ms
        self.speculative_ms = min(speculative_ms, endpoint_ms)
        self.min_speech_ms = min_speech_ms
        self.start_threshold = start_threshold
        self.end_threshold = end_threshold
        self.in_speech = False
        self.speech_start_ms = 0
        self.last_voiced_ms = 0
        self.voiced_ms = 0
        self._paused = False
        self._clock_ms = 0
        self._wait_ms: int | None = None  # this pause's wait, from an end-of-turn verdict

    @property
    def wait_ms(self) -> int:
        """The silence that ends the turn in progress now."""
        return self.endpoint_ms if self._wait_ms is None else self._wait_ms

    def set_wait(self, wait_ms: int) -> list[TurnEvent]:
        """Apply a verdict on the current pause; ends the turn at once when the silence already
        lasts ``wait_ms`` (a verdict that comes late must not wait for the next window)."""
        if not self.paused:
            return []
        self._wait_ms = wait_ms
        if self._clock_ms - self.last_voiced_ms < wait_ms:
            return []
        ended = self.end_turn()
        return [ended] if ended is not None else []

    @property
    def turn_ms(self) -> int:
        """How long the caller's turn in progress has lasted (0 when there is none)."""
        return self._clock_ms - self.speech_start_ms if self.in_speech else 0

    @property
    def now_ms(self) -> int:
        return self._clock_ms

    def push(self, probability: float) -> list[TurnEvent]:
        """Account one VAD window; return what changed."""
        self._clock_ms += WINDOW_MS
        end = self._clock_ms
        threshold = self.end_threshold if self.in_speech else self.start_threshold
        events: list[TurnEvent] = []
        if probability >= threshold:
            if not self.in_speech:
                self.in_speech = True
                self.speech_start_ms = end - WINDOW_MS
                self.voiced_ms = 0
                events.append(SpeechStarted(self.speech_start_ms))
            elif self._paused:
                self._paused = False
                self._wait_ms = None
                events.append(SpeechResumed(self.speech_start_ms))
            self.last_voiced_ms = end
            self.voiced_ms += WINDOW_MS
            return events
        if not self.in_speech:
            return events
        silence = end - self.last_voiced_ms
        enough_speech = self.voiced_ms >= self.min_speech_ms
        if enough_speech and not self._paused and silence >= self.speculative_ms:
            self._paused = True
            events.append(SpeechPaused(self.speech_start_ms, self.last_voiced_ms))
        if silence >= self.wait_ms:
            self.in_speech = False
            self._paused = False
            self._wait_ms = None
            span = (self.speech_start_ms, self.last_voiced_ms)
            events.append(TurnEnded(*span) if enough_speech else NoiseDiscarded(*span))
        return events

    @property
    def paused(self) -> bool:
        """In a turn, silent for at least the speculative wait."""
        return self.in_speech and self._paused

    def end_turn(self) -> TurnEnded | None:
        """End the turn now (a verdict shortened the wait below the silence so far)."""
        if not self.in_speech:
            return None
        self.in_speech = False
        self._paused = False
        self._wait_ms = None
        return TurnEnded(self.speech_start_ms, self.last_voiced_ms)

    def reset(self) -> None:
        """Forget the turn in progress (the audio it covered was consumed elsewhere)."""
        self.in_speech = False
        self._paused = False
        self._wait_ms = None
        self.voiced_ms = 0
