"""The reply to a turn the caller has probably finished, prepared before the turn is confirmed.

At the speculative pause the caller's words are already transcribed, but the turn is only
confirmed after the full endpoint wait. In that wait a fork of the dialogue session decides the
reply and the voice synthesizes its first piece. When the turn is confirmed as tried, the call
adopts the fork and plays the prepared audio at once; when the caller goes on, the trial is
dropped. A fork refuses actions with outside effects (they wait for the confirmed turn), and
nothing it produced is an event until the call adopts it, so a dropped trial leaves no trace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt

from media_nodes.dialogue.protocol import (
    AgentOutput,
    AgentText,
    DialogueSession,
    SpeculationRefused,
    UserTurn,
)
from media_nodes.tts.sentences import SentenceSplitter
from media_nodes.tts.voice import Voice, speakable_pieces

Audio = list[npt.NDArray[np.int16]]


class TrialReply:
    def __init__(
        self,
        session: DialogueSession,
        text: str,
        *,
        turn_index: int,
        end_ms: int,
        inputs_seen: int,
        voice: Voice,
        rate: int,
    ) -> None:
        self.session = session
        self.text = text
        self.turn_index = turn_index  # the turn it answers: the index its facts carry
        self.end_ms = end_ms  # the end of the speech it answers, as the turn detector counts
        self.inputs_seen = inputs_seen  # the call's dialogue inputs when the fork was made
        self._voice = voice
        self._rate = rate  # the call's playback rate
        self._stream = session.handle(UserTurn(text), turn_index=turn_index)
        self._head: list[AgentOutput] = []  # what was taken from the stream before adoption
        self._ended = False  # the stream gave everything it had
        self._refused = False
        self.first_audio: dict[str, asyncio.Task[Audio]] = {}
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        """Take the stream up to its first sentence (the decision comes before any output),
        and start that sentence's synthesis. The rest stays in the stream: what a barge-in
        leaves unsaid must stay with the session, as on any turn."""
        splitter = SentenceSplitter()
        try:
            async for output in self._stream:
                self._head.append(output)
                if isinstance(output, AgentText) and (first := splitter.push(output.text)):
                    self._prepare(first[0])
                    return
            self._ended = True
            if rest := splitter.flush():
                self._prepare(rest)
        except SpeculationRefused:
            self._refused = True

    def _prepare(self, sentence: str) -> None:
        """Synthesize the reply's first piece, as the reply's own synthesis would cut it."""
        if self._voice.is_cached(sentence, self._rate):
            return  # cached audio costs nothing to send
        piece = speakable_pieces(self._voice, sentence, 0, self._rate)[0]
        self.first_audio[piece] = asyncio.create_task(self._synthesize(piece))

    async def _synthesize(self, text: str) -> Audio:
        return [pcm async for pcm in self._voice.speak(text, self._rate)]

    async def adopt(self) -> AsyncIterator[AgentOutput] | None:
        """The turn is confirmed as tried: the reply's outputs (the decision may still be
        running; it is awaited), or None when the fork refused to decide or failed."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self._task)
        if self._refused or self._task.cancelled() or self._task.exception() is not None:
            return None
        return self._replay()

    async def _replay(self) -> AsyncIterator[AgentOutput]:
        # The head goes out without a pause between items: a cancellation cannot fall inside it.
        for output in self._head:
            yield output
        if not self._ended:
            async for output in self._stream:
                yield output

    def drop(self) -> None:
        """The caller went on, or the turn ended differently: forget all of it."""
        self._task.cancel()
        for task in self.first_audio.values():
            task.cancel()
        self.first_audio.clear()
