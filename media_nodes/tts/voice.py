"""The media node's voice: an engine, resampled once to the rate a call plays at, with a cache.

Each transport plays at its own rate (Twilio's phone line 8 kHz, WebRTC 16 kHz): a call asks for
its rate and gets the engine's audio converted once, straight from the engine's own rate.

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

from media_nodes.audio.resample import StreamResampler, resample
from media_nodes.tts.base import TtsEngine
from media_nodes.tts.sentences import fit_pieces

# The rates calls play at - Twilio's 8 kHz phone line and WebRTC's wideband 16 kHz: fixed
# prompts are prepared at each.
PLAY_RATES = (8000, 16000)
SILENCE_PEAK = 300  # int16 magnitude below which leading samples count as silence
LEAD_IN_MS = 10  # kept before the first sound


def trim_leading_silence(pcm: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.int16]:
    """Engines start sentences with up to ~200 ms of silence: the caller would wait for it."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > SILENCE_PEAK)
    if not len(loud):
        return pcm[:0]
    return pcm[max(0, int(loud[0]) - rate * LEAD_IN_MS // 1000) :]


CACHEABLE_CHARS = 160  # longer pieces are rarely repeated word for word


class Voice:
    def __init__(
        self,
        engine: TtsEngine,
        cache_entries: int = 256,
        *,
        rates: tuple[int, ...] = PLAY_RATES,
    ) -> None:
        self.engine = engine
        self.rates = rates
        self._cache: OrderedDict[tuple[int, str], npt.NDArray[np.int16]] = OrderedDict()
        self._cache_entries = cache_entries
        # Candidates for the cache, by rate: a piece is kept the second time a call at that
        # rate says it.
        self._said_once: OrderedDict[tuple[int, str], None] = OrderedDict()

    async def speak(
        self, text: str, rate: int, *, cache: bool = True
    ) -> AsyncIterator[npt.NDArray[np.int16]]:
        """int16 chunks of ``text`` at ``rate``; short pieces said before are kept for the next
        time."""
        key = (rate, text)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            yield cached
            return
        resampler = StreamResampler(self.engine.sample_rate, rate)
        kept: list[npt.NDArray[np.int16]] = []
        sounding = False
        async for chunk in self.engine.synthesize(text):
            out = resampler.process(chunk)
            if not sounding:
                out = trim_leading_silence(out, rate)
                sounding = len(out) > 0
            if len(out):
                kept.append(out)
                yield out
        tail = resampler.flush()
        if len(tail):
            kept.append(tail)
            yield tail
        if cache and kept and self._said_before(key):
            self._keep(key, np.concatenate(kept))

    def _keep(self, key: tuple[int, str], pcm: npt.NDArray[np.int16]) -> None:
        if len(key[1]) > CACHEABLE_CHARS:
            return
        self._cache[key] = pcm
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)

    def _said_before(self, key: tuple[int, str]) -> bool:
        if key in self._said_once:
            del self._said_once[key]
            return True
        self._said_once[key] = None
        while len(self._said_once) > 4 * self._cache_entries:
            self._said_once.popitem(last=False)
        return False

    async def prepare(self, text: str) -> None:
        """Synthesize a fixed prompt into the cache ahead of time, at every rate calls play at:
        synthesized once, resampled to each rate."""
        missing = [rate for rate in self.rates if not self.is_cached(text, rate)]
        if not missing:
            return
        chunks = [chunk async for chunk in self.engine.synthesize(text)]
        if not chunks:
            return
        audio = np.concatenate(chunks)
        for rate in missing:
            pcm = trim_leading_silence(resample(audio, self.engine.sample_rate, rate), rate)
            if len(pcm):
                self._keep((rate, text), pcm)

    def is_cached(self, text: str, rate: int) -> bool:
        return (rate, text) in self._cache


def speakable_pieces(voice: Voice, sentence: str, previous_chars: int, rate: int) -> list[str]:
    """What to synthesize for ``sentence``: whole when cached (no synthesis wait), else cut so
    each piece is ready before the one before it has finished playing (see :func:`fit_pieces`)."""
    if voice.is_cached(sentence, rate):
        return [sentence]
    return fit_pieces(sentence, previous_chars)
