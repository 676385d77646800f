"""The caller's recent audio at 16 kHz, addressable by stream milliseconds, with arrival times.

The turn detector speaks in stream milliseconds; ASR needs the samples of a span; latency needs
the wall-clock time the frame holding a given millisecond arrived. Old audio is trimmed once a turn
is consumed, so memory stays bounded however long the call.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

RATE = 16000
PER_MS = RATE // 1000
ARRIVALS_KEPT = 1500  # frames (30 s of 20 ms frames)


class CallerAudio:
    def __init__(self, initial_seconds: float = 10.0) -> None:
        self._buf = np.zeros(int(RATE * initial_seconds), dtype=np.float32)
        self._len = 0
        self._offset = 0  # stream sample index of _buf[0]
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=ARRIVALS_KEPT)

    @property
    def end_ms(self) -> int:
        return (self._offset + self._len) // PER_MS

    def append(self, samples: npt.NDArray[np.float32], arrived_at: float) -> None:
        needed = self._len + len(samples)
        if needed > len(self._buf):
            grown = np.zeros(max(needed, 2 * len(self._buf)), dtype=np.float32)
            grown[: self._len] = self._buf[: self._len]
            self._buf = grown
        self._buf[self._len : needed] = samples
        self._len = needed
        self._arrivals.append((self._offset + self._len, arrived_at))

    def slice(self, start_ms: int, end_ms: int) -> npt.NDArray[np.float32]:
        """Samples of ``start_ms``..``end_ms`` that are still held (clipped to what exists)."""
        start = max(start_ms * PER_MS - self._offset, 0)
        end = min(end_ms * PER_MS - self._offset, self._len)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        return self._buf[start:end].copy()

    def arrival_of(self, ms: int) -> float | None:
        """When the frame carrying stream millisecond ``ms`` arrived."""
        sample = ms * PER_MS
        for end_sample, arrived_at in self._arrivals:
            if end_sample >= sample:
                return arrived_at
        return self._arrivals[-1][1] if self._arrivals else None

    def trim_before(self, ms: int) -> None:
        """Forget audio before ``ms`` (already transcribed or silence)."""
        drop = min(max(ms * PER_MS - self._offset, 0), self._len)
        if drop == 0:
            return
        self._buf[: self._len - drop] = self._buf[drop : self._len]
        self._len -= drop
        self._offset += drop
