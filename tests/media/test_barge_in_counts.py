"""Barge-ins are counted, and so are the false ones: speech that cut the agent off and then
turned out to hold no words.

Whisper returns no words for some sounds Silero calls speech (a cough, clatter, a door), but no
such sound could be made to do so reliably here: synthetic vowels are not speech to Silero, and
Whisper finds words in reversed or noisy speech. So the second call keeps the real VAD, turn
logic and playout, and has the real transcription's result emptied, which is what Whisper says
of such a sound.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from media_nodes.asr.engine import Asr, Transcript
from media_nodes.simulator.caller import call
from shared.events.models import TurnAgent, TurnUser
from tests.media.conftest import PATIENT, NodeFactory, RunningNode, clip


class HearsNoWords:
    """The node's Whisper, whose transcripts come back empty."""

    def __init__(self, asr: Asr) -> None:
        self._asr = asr

    @property
    def device(self) -> str:
        return self._asr.device

    async def transcribe(self, audio: npt.NDArray[np.float32]) -> Transcript:
        heard = await self._asr.transcribe(audio)
        return Transcript("", None, heard.duration_s, heard.audio_s)

    def warm_up(self) -> None:
        self._asr.warm_up()

    def close(self) -> None:
        self._asr.close()


def counted(running: RunningNode, name: str) -> float:
    return running.node.metrics.registry.get_sample_value(name) or 0.0


async def test_a_barge_in_with_words_is_counted_and_is_not_false(start_node: NodeFactory) -> None:
    async with start_node() as running:
        result = await call(running.url, [clip("interrupt", barge_in_after_ms=1500)], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)
        barge_ins = counted(running, "parley_barge_ins_total")
        false = counted(running, "parley_false_barge_ins_total")
    assert result.clears >= 1
    assert next(e.payload for e in events if isinstance(e.payload, TurnAgent)).interrupted
    assert (barge_ins, false) == (1, 0)


async def test_a_barge_in_that_held_no_words_is_a_false_one(start_node: NodeFactory) -> None:
    async with start_node() as running:
        running.node.asr = HearsNoWords(running.node.asr)
        result = await call(running.url, [clip("interrupt", barge_in_after_ms=1500)], **PATIENT)
        events = await running.wait_call_ended(result.call_sid)
        barge_ins = counted(running, "parley_barge_ins_total")
        false = counted(running, "parley_false_barge_ins_total")
    assert result.clears >= 1
    assert not [e for e in events if isinstance(e.payload, TurnUser)]
    assert (barge_ins, false) == (1, 1)
