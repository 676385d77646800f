"""The media node's voice: an engine, resampled to the phone's 8 kHz, with a cache.

Agents say the same sentences over and over (the greeting, "Is there anything else I can help you
with?"), so short pieces are kept in a bounded LRU cache shared by all calls: a repeated sentence
costs no synthesis at all. A piece is kept the second time it is said: sentences quoting one
caller's order number or name are said once and would only push useful prompts out (and fill
memory). The greeting is put there at startup, so a call's first words go out the moment it starts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt

from media_nodes.audio.resample import StreamResampler
from media_nodes.tts.base import TtsEngine
from media_nodes.tts.sentences import fit_pieces

PHONE_RATE = 8000
SILENCE_PEAK = 300  # int16 magnitude below which leading samples count as silence
LEAD_IN_SAMPLES = 80  # keep 10 ms before the first sound


def trim_leading_silence(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """Engines start sentences with up to ~200 ms of silence: the caller would wait for it."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > SILENCE_PEAK)
    if not len(loud):
        return pcm[:0]
    return pcm[max(0, int(loud[0]) - LEAD_IN_SAMPLES) :]


CACHEABLE_CHARS = 160  # longer pieces are rarely repeated word for word


class Voice:
    def __init__(self, engine: TtsEngine, cache_entries: int = 256) -> None:
        self.engine = engine
        self._cache: OrderedDict[str, npt.NDArray[np.int16]] = OrderedDict()
        self._cache_entries = cache_entries
        self._said_once: OrderedDict[str, None] = OrderedDict()  # candidates for the cache

    async def speak(self, text: str, *, cache: bool = True) -> AsyncIterator[npt.NDArray[np.int16]]:
        """8 kHz int16 chunks of ``text``; short pieces said before are kept for the next time."""
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            yield cached
            return
        resampler = StreamResampler(self.engine.sample_rate, PHONE_RATE)
        kept: list[npt.NDArray[np.int16]] = []
        sounding = False
        async for chunk in self.engine.synthesize(text):
            out = resampler.process(chunk)
            if not sounding:
                out = trim_leading_silence(out)
                sounding = len(out) > 0
            if len(out):
                kept.append(out)
                yield out
        tail = resampler.flush()
        if len(tail):
            kept.append(tail)
            yield tail
        if cache and kept and len(text) <= CACHEABLE_CHARS and self._said_before(text):
            self._cache[text] = np.concatenate(kept)
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)

    def _said_before(self, text: str) -> bool:
        if text in self._said_once:
            del self._said_once[text]
            return True
        self._said_once[text] = None
        while len(self._said_once) > 4 * self._cache_entries:
            self._said_once.popitem(last=False)
        return False

    async def prepare(self, text: str) -> None:
        """Synthesize a fixed prompt into the cache ahead of time."""
        self._said_once[text] = None  # a fixed prompt: keep it the first time
        async for _ in self.speak(text, cache=True):
            pass

    def is_cached(self, text: str) -> bool:
        return text in self._cache


def speakable_pieces(voice: Voice, sentence: str, previous_chars: int) -> list[str]:
    """What to synthesize for ``sentence``: whole when cached (no synthesis wait), else cut so
    each piece is ready before the one before it has finished playing (see :func:`fit_pieces`)."""
    if voice.is_cached(sentence):
        return [sentence]
    return fit_pieces(sentence, previous_chars)
