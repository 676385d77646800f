"""Sample-rate conversion with soxr, streaming so chunk boundaries leave no clicks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr


class StreamResampler:
    """Converts a stream of int16 chunks from one rate to another, keeping filter state."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._same = in_rate == out_rate
        self._stream = (
            None if self._same else soxr.ResampleStream(in_rate, out_rate, 1, "int16", quality)
        )

    def process(self, chunk: npt.NDArray[np.int16], last: bool = False) -> npt.NDArray[np.int16]:
        if self._stream is None:
            return chunk
        out: npt.NDArray[np.int16] = self._stream.resample_chunk(chunk, last=last)
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
