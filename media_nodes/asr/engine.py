"""What the call pipeline needs of a speech recognizer, whichever engine does the work.

The pipeline hands a recognizer one caller turn (16 kHz mono float32) and awaits its
:class:`Transcript`; it never sees the engine's model, threads or device. Engines are found by
name in :mod:`media_nodes.asr.engines` (``PARLEY_ASR_ENGINE``); Whisper (``whisper.py`` there) is
the engine in production; tests drive the call logic with a scripted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16000  # what every recognizer is given


class AsrError(RuntimeError):
    """Recognition failed (model error); the message says why."""


@dataclass(frozen=True)
class Transcript:
    text: str  # "" when no words were heard (noise, silence)
    confidence: float | None
    duration_s: float  # inference time
    audio_s: float


class Asr(Protocol):
    """A speech recognizer shared by every call of a node."""

    @property
    def device(self) -> str:
        """Where inference runs ("cpu", "cuda"), for the node's health report."""
        ...

    async def transcribe(self, audio: npt.NDArray[np.float32]) -> Transcript:
        """Transcribe :data:`SAMPLE_RATE` mono audio without blocking the event loop; raises
        :class:`AsrError` when recognition fails."""
        ...

    def warm_up(self) -> None:
        """Pay lazy initialisation before the first caller does."""
        ...

    def close(self) -> None:
        """Release threads and memory (the node is stopping)."""
        ...
