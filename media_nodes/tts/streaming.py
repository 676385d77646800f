"""A reply's speech synthesized ahead of its playback, piece by piece, without gaps.

Synthesis runs as its own task and never waits for playback: while one piece plays, the next is
being synthesized into the queue. Each sentence is cut by :func:`speakable_pieces` so that the next
piece is ready before the one playing ends; a cached sentence goes whole (it costs nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from media_nodes.tts.base import TtsError
from media_nodes.tts.voice import Voice, speakable_pieces

P = TypeVar("P")
PieceAudio = tuple[P, npt.NDArray[np.int16] | None]  # None: the piece is complete


async def synthesize_ahead(
    voice: Voice,
    rate: int,
    sentences: asyncio.Queue[str | None],
    audio: asyncio.Queue[PieceAudio[P] | None],
    *,
    new_piece: Callable[[str], P],
    on_audio: Callable[[P, npt.NDArray[np.int16]], None],
    on_error: Callable[[TtsError], None],
    ready: Mapping[str, asyncio.Task[list[npt.NDArray[np.int16]]]] | None = None,
) -> None:
    """Speak each sentence from ``sentences`` (until None) into ``audio`` at ``rate``:
    ``new_piece(text)`` names each piece before its audio, ``(piece, None)`` ends it, a final
    None ends the reply.
    ``on_audio(piece, pcm)`` sees each chunk as it is synthesized, before it is queued.
    A piece whose synthesis fails is reported to ``on_error`` and ends with what it had.
    ``ready`` holds pieces whose synthesis started earlier (a speculative reply's first)."""
    previous_chars = 0
    while (sentence := await sentences.get()) is not None:
        for text in speakable_pieces(voice, sentence, previous_chars, rate):
            previous_chars = len(text)
            piece = new_piece(text)
            try:
                async for pcm in _speak(voice, rate, text, ready):
                    on_audio(piece, pcm)
                    await audio.put((piece, pcm))
            except TtsError as exc:
                on_error(exc)
            await audio.put((piece, None))
    await audio.put(None)


async def _speak(
    voice: Voice,
    rate: int,
    text: str,
    ready: Mapping[str, asyncio.Task[list[npt.NDArray[np.int16]]]] | None,
) -> AsyncIterator[npt.NDArray[np.int16]]:
    early = ready.get(text) if ready is not None else None
    if early is not None and not early.cancelled():
        for pcm in await early:
            yield pcm
        return
    async for pcm in voice.speak(text, rate):
        yield pcm
