"""The TTS interface every engine implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import numpy as np
import numpy.typing as npt


class TtsError(RuntimeError):
    """Synthesis failed; the message says why."""


class TtsEngine(Protocol):
    """Speaks one sentence at a time, yielding int16 mono chunks at ``sample_rate``."""

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[npt.NDArray[np.int16]]: ...

    def warm_up(self) -> None: ...
