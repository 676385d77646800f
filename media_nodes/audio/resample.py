"""Sample-rate conversion: streams through libswresample (PyAV), whole clips through soxr.

A stream is converted as it arrives and must not be held back: soxr's streaming resampler
returns its output in blocks, up to 100 ms behind its input (about 80 ms at 8 -> 16 kHz), and on
the caller's audio that delay was added to every end of turn and every barge-in. libswresample
keeps back a few samples of filter history (2 ms). Whole clips have no such constraint and get
soxr's higher-quality filter.
"""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt
import soxr


class StreamResampler:
    """Converts a stream of int16 mono chunks from one rate to another, keeping filter state, so
    chunk boundaries leave no clicks; what it returns lags what it was given by about 2 ms."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._resampler = (
            None
            if in_rate == out_rate
            else av.AudioResampler(format="s16", layout="mono", rate=out_rate)
        )

    def process(self, chunk: npt.NDArray[np.int16], last: bool = False) -> npt.NDArray[np.int16]:
        """The converted samples ready so far; ``last`` also flushes the filter (the stream
        is over)."""
        if self._resampler is None:
            return chunk
        frames = []
        if len(chunk):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk, dtype=np.int16).reshape(1, -1),
                format="s16",
                layout="mono",
            )
            frame.sample_rate = self.in_rate
            frames += self._resampler.resample(frame)
        if last:
            frames += self._resampler.resample(None)
        if not frames:
            return np.zeros(0, dtype=np.int16)
        out: npt.NDArray[np.int16] = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
        return out

    def flush(self) -> npt.NDArray[np.int16]:
        return self.process(np.zeros(0, dtype=np.int16), last=True)


def resample(audio: npt.NDArray[np.int16], in_rate: int, out_rate: int) -> npt.NDArray[np.int16]:
    """Convert a whole clip at once."""
    if in_rate == out_rate:
        return audio
    out: npt.NDArray[np.int16] = soxr.resample(audio, in_rate, out_rate, quality="HQ")
    return out


def to_float32(audio: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """int16 -> float32 in [-1, 1), what the models take."""
    return (audio.astype(np.float32) / 32768.0).astype(np.float32)
