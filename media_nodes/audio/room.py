"""The caller's room: a per-call noise floor that keeps background talk from counting as the
caller's voice.

Silero calls babble (other people talking) speech, so on its own it opens turns on the room's
noise, barges in over the agent, and never lets a turn end. Per 32 ms window this module
measures the level (mean power over the last 160 ms), keeps the room's floor (a low percentile
of the last seconds of levels) and how speech-like the quiet part of the room is (how often
Silero fires on windows near the floor). In a room that sounds like speech, a window counts as
the caller's voice only when it is also well above the floor: the caller is nearer the phone
than the room. In a quiet room, or steady noise Silero ignores (street, hum, music), nothing
changes. Deterministic: samples in, gated probabilities out.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from media_nodes.audio.vad import WINDOW

SMOOTH_WINDOWS = 5  # 160 ms: a syllable, so one loud babble phoneme does not pass
HISTORY_WINDOWS = 188  # 6 s of levels for the floor
FLOOR_PERCENTILE = 50  # the room's typical level: a low percentile follows babble's dips
SPEECHY_FRACTION = 0.15  # of near-floor windows Silero calls speech: a talking room
# The first two seconds: the room is unknown, so only loud windows count. Silero takes a second
# or more to start firing on babble: a room judged after one second could pass for quiet.
LEARNING_WINDOWS = 62
SETTLING_WINDOWS = 188  # until 6 s of history, the room is learnt from during turns too
LONG_TURN_MS = 4000  # a "turn" this long may be the room itself: learn from it too
SILENCE_DB = -100.0


class RoomNoise:
    def __init__(self, *, margin_db: float = 6.0, in_turn_margin_db: float = 3.0) -> None:
        self.margin_db = margin_db
        # Hysteresis: the caller's quieter last words ("...of my order") still count once the
        # turn has begun.
        self.in_turn_margin_db = in_turn_margin_db
        self._pending = np.zeros(0, dtype=np.float32)
        self._powers: deque[float] = deque(maxlen=SMOOTH_WINDOWS)
        self._levels: deque[float] = deque(maxlen=HISTORY_WINDOWS)
        self._near_floor_speech: deque[bool] = deque(maxlen=HISTORY_WINDOWS)
        self.floor_db = SILENCE_DB

    @property
    def talking_room(self) -> bool:
        """Silero fires often on the room's own level: background voices. Assumed while the
        room is still unknown (a caller in a quiet room is loud above its floor anyway)."""
        near = self._near_floor_speech
        if len(self._levels) < LEARNING_WINDOWS:
            return True
        return bool(near) and sum(near) / len(near) >= SPEECHY_FRACTION

    def levels(self, chunk: npt.NDArray[np.float32]) -> list[float]:
        """Smoothed level (dBFS) of each complete 512-sample window, aligned with the VAD's."""
        self._pending = np.concatenate([self._pending, chunk])
        out = []
        while len(self._pending) >= WINDOW:
            window = self._pending[:WINDOW].astype(np.float64)
            self._pending = self._pending[WINDOW:]
            self._powers.append(float(np.mean(window * window)))
            out.append(10 * float(np.log10(sum(self._powers) / len(self._powers) + 1e-10)))
        return out

    def gate(
        self, probability: float, level_db: float, *, turn_ms: int = 0, over_agent: bool = False
    ) -> float:
        """The speech probability of one window, as the caller's voice; updates the room.

        ``turn_ms``: how long the caller's turn in progress has lasted (0: none). The caller's
        own soft syllables must not teach the room that it talks, so turns are left out - until
        one is long enough to be the room itself, which bounds how long it can last - except in
        the call's first seconds: a "turn" opened by the room before it was known must not stop
        the room from being learnt (in a quiet room the caller is far above the floor anyway).
        ``over_agent``: the agent is speaking. Speech then would interrupt it, so the softer
        in-turn margin does not apply: a burst of babble must not hold the agent by lingering
        a few dB above the floor, and a caller who cuts in speaks up."""
        self._levels.append(level_db)
        self.floor_db = float(np.percentile(self._levels, FLOOR_PERCENTILE))
        loud = level_db >= self.floor_db + self.margin_db
        settling = len(self._levels) < SETTLING_WINDOWS
        if not loud and (settling or turn_ms == 0 or turn_ms >= LONG_TURN_MS):
            self._near_floor_speech.append(probability >= 0.5)
        margin = self.in_turn_margin_db if turn_ms and not over_agent else self.margin_db
        if self.talking_room and level_db < self.floor_db + margin:
            return 0.0
        return probability
