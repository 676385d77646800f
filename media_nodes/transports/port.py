"""The seam between a call and whatever carries its audio: PCM at the transport's own rate.

A transport converts at its edge and nowhere else. Caller audio reaches the session as 16-bit
mono PCM at :attr:`AudioPort.rate` (Twilio's 8 kHz after mu-law decoding, WebRTC's 16 kHz
straight from Opus); the session plays agent audio at that same rate, in 20 ms frames, and places
named marks between them. When playback reaches a mark the transport reports :class:`Played`:
what Twilio's mark echo means, and what a WebRTC track knows when its queue drains past the mark.
``clear`` drops whatever has not been played yet (a barge-in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

FRAME_MS = 20


def frame_samples(rate: int) -> int:
    """Samples in one 20 ms frame at ``rate``."""
    return rate * FRAME_MS // 1000


@dataclass(frozen=True)
class Played:
    """Playback reached the mark ``name``: the caller heard everything sent before it."""

    mark: str


class AudioPort(Protocol):
    """Where agent audio goes (a Twilio stream, a WebRTC track), at the rate caller audio comes."""

    @property
    def rate(self) -> int: ...

    async def play(self, pcm: npt.NDArray[np.int16]) -> None:
        """One 20 ms frame of agent audio at :attr:`rate`."""

    async def mark(self, name: str) -> None:
        """Report :class:`Played` ``name`` once everything played before it has been heard."""

    async def clear(self) -> None:
        """Drop what has not been played yet."""
