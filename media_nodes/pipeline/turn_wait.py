"""How long the caller's pause must last: the end-of-turn model, the words so far, the dialogue.

At the speculative pause the model judges the last 8 s of the turn in a worker thread, and the
speculative transcript is read for words that break off mid-clause; each, when it comes, sets
the pause's wait (see :func:`endpoint_wait_ms`), which may end the turn at once. Speech before
then makes both stale: :meth:`TurnWait.cancel` drops them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt

from media_nodes.asr.unfinished import reads_unfinished
from media_nodes.audio.end_of_turn import (
    Expectation,
    SmartTurnModel,
    WaitPolicy,
    endpoint_wait_ms,
)

log = logging.getLogger(__name__)

ApplyWait = Callable[[int], Awaitable[None]]


class TurnWait:
    def __init__(self, model: SmartTurnModel | None, policy: WaitPolicy) -> None:
        self.model = model
        self.policy = policy
        self.expectation: Expectation = None
        self._probability: float | None = None  # the model's verdict on this pause
        self._words_pending = False  # this pause's transcript is still being made
        self._words_unfinished = False  # this pause's transcript breaks off mid-clause
        self._tasks: set[asyncio.Task[None]] = set()

    def base_ms(self, expectation: Expectation) -> int:
        """The wait before any verdict, for a turn answering what the dialogue asked."""
        self.expectation = expectation
        return endpoint_wait_ms(self.policy, None, expectation)

    @property
    def wait_ms(self) -> int:
        """The wait this pause's verdicts give so far: up to the cap while its words are not in
        (the reply needs them anyway, so holding the turn for them costs no answer time)."""
        if self._words_pending:
            return self.policy.cap_ms
        return endpoint_wait_ms(
            self.policy,
            self._probability,
            self.expectation,
            words_unfinished=self._words_unfinished,
        )

    def judge(self, audio: npt.NDArray[np.float32], apply: ApplyWait) -> None:
        """Ask the model about this pause; ``apply`` gets the wait its verdict gives."""
        if self.model is not None:
            model = self.model
            self._start(lambda: self._judge(model, audio, apply))

    def expect_words(self) -> None:
        """This pause is being transcribed: the turn holds until :meth:`heard`."""
        self._words_pending = True

    def heard(self, text: str, apply: ApplyWait) -> None:
        """The speculative transcript of this pause ("" when it failed); ``apply`` gets the
        wait it gives: longer when the words break off mid-clause."""
        if not self._words_pending:
            return
        self._words_pending = False
        self._words_unfinished = reads_unfinished(text)
        self._start(lambda: apply(self.wait_ms))

    def _start(self, work: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await work()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(
        self, model: SmartTurnModel, audio: npt.NDArray[np.float32], apply: ApplyWait
    ) -> None:
        try:
            probability = await asyncio.to_thread(model.complete_probability, audio)
        except Exception as exc:  # a failed verdict leaves the silence rule in charge
            log.warning("end-of-turn model failed: %s", exc)
            return
        self._probability = probability
        await apply(self.wait_ms)

    def cancel(self) -> None:
        """The pause is over (the caller spoke again, or the turn ended): forget its verdicts."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._probability = None
        self._words_pending = False
        self._words_unfinished = False
