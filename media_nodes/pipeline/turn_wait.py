"""How long the caller's pause must last: the end-of-turn model's verdict and the dialogue.

At the speculative pause the model judges the last 8 s of the turn in a worker thread; when its
verdict comes the pause's wait is set (see :func:`endpoint_wait_ms`), which may end the turn at
once. Speech before the verdict makes it stale: :meth:`TurnWait.cancel` drops it. A number the
dialogue hears read to its full length lifts the digit-group wait for the rest of the turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt

from media_nodes.audio.end_of_turn import (
    Expectation,
    SmartTurnModel,
    WaitPolicy,
    endpoint_wait_ms,
)

log = logging.getLogger(__name__)


class TurnWait:
    def __init__(self, model: SmartTurnModel | None, policy: WaitPolicy) -> None:
        self.model = model
        self.policy = policy
        self.expectation: Expectation = None
        self._verdict: asyncio.Task[None] | None = None
        self._pause_probability: float | None = None  # the verdict on the current pause
        self._applying: asyncio.Task[None] | None = None
        self.last_probability: float | None = None
        self.last_inference_ms: float | None = None

    def base_ms(self, expectation: Expectation) -> int:
        """The wait before any verdict, for a turn answering what the dialogue asked."""
        self.expectation = expectation
        return endpoint_wait_ms(self.policy, None, expectation)

    def judge(
        self, audio: npt.NDArray[np.float32], apply: Callable[[int], Awaitable[None]]
    ) -> None:
        """Ask the model about this pause; ``apply`` gets the wait its verdict gives."""
        self.cancel()
        if self.model is None:
            return
        self._verdict = asyncio.create_task(self._judge(self.model, audio, apply))

    def number_whole(self, apply: Callable[[int], Awaitable[None]]) -> None:
        """The caller has read the whole number: the rest of the turn waits as any answer does
        (the digit-group wait is for numbers that may go on); ``apply`` gets this pause's wait."""
        self.expectation = None
        wait = endpoint_wait_ms(self.policy, self._pause_probability, None)

        async def shorten() -> None:
            await apply(wait)

        self._applying = asyncio.create_task(shorten())

    async def _judge(
        self,
        model: SmartTurnModel,
        audio: npt.NDArray[np.float32],
        apply: Callable[[int], Awaitable[None]],
    ) -> None:
        started = time.perf_counter()
        try:
            probability = await asyncio.to_thread(model.complete_probability, audio)
        except Exception as exc:  # a failed verdict leaves the silence rule in charge
            log.warning("end-of-turn model failed: %s", exc)
            return
        self.last_inference_ms = (time.perf_counter() - started) * 1000
        self.last_probability = self._pause_probability = probability
        await apply(endpoint_wait_ms(self.policy, probability, self.expectation))

    def cancel(self) -> None:
        self._pause_probability = None
        if self._applying is not None:
            self._applying.cancel()
            self._applying = None
        if self._verdict is not None:
            self._verdict.cancel()
            self._verdict = None
