"""Voice activity with Silero VAD: the ONNX model faster-whisper ships, run by onnxruntime.

One :class:`SileroModel` (an ONNX session) per process is shared by every call; each call keeps
its own :class:`StreamingVad` with the recurrent state, so calls never see each other's audio.
A 32 ms window costs well under a millisecond, so it runs inline on the event loop.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime

SAMPLE_RATE = 16000
WINDOW = 512  # samples per inference at 16 kHz: 32 ms
CONTEXT = 64  # samples of the previous window the model sees
WINDOW_MS = WINDOW * 1000 // SAMPLE_RATE

VadState = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]  # the model's recurrent state


class VadModel(Protocol):
    """What a call's :class:`StreamingVad` asks of the shared model (Silero in production)."""

    def probability(
        self, window: npt.NDArray[np.float32], state: VadState
    ) -> tuple[float, VadState]:
        """Speech probability of one (context + window) input, and the next recurrent state."""
        ...


def silero_model_path() -> Path:
    """The Silero VAD ONNX file inside the installed faster_whisper package."""
    assets = files("faster_whisper") / "assets"
    candidates = sorted(
        (Path(str(p)) for p in assets.iterdir() if p.name.startswith("silero_vad")),
        reverse=True,
    )
    if not candidates:
        raise FileNotFoundError("faster_whisper ships no silero_vad*.onnx asset")
    return candidates[0]


class SileroModel:
    """The shared ONNX session."""

    def __init__(self, path: Path | None = None) -> None:
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(
            str(path or silero_model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )

    def probability(
        self, window: npt.NDArray[np.float32], state: VadState
    ) -> tuple[float, VadState]:
        """Speech probability of one (context + window) input, and the next recurrent state."""
        h, c = state
        out, h, c = self.session.run(None, {"input": window.reshape(1, -1), "h": h, "c": c})
        return float(np.asarray(out).reshape(-1)[0]), (h, c)


class StreamingVad:
    """Feeds arbitrary-sized 16 kHz float chunks; yields one probability per 32 ms window."""

    def __init__(self, model: VadModel) -> None:
        self._model = model
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._state = (
            np.zeros((1, 1, 128), dtype=np.float32),
            np.zeros((1, 1, 128), dtype=np.float32),
        )

    def process(self, chunk: npt.NDArray[np.float32]) -> list[float]:
        self._pending = np.concatenate([self._pending, chunk])
        probabilities = []
        while len(self._pending) >= WINDOW:
            window = self._pending[:WINDOW]
            self._pending = self._pending[WINDOW:]
            prob, self._state = self._model.probability(
                np.concatenate([self._context, window]), self._state
            )
            self._context = window[-CONTEXT:]
            probabilities.append(prob)
        return probabilities
