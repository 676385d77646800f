"""How long the caller's pause must last: the end-of-turn model's verdict and the dialogue.

At the speculative pause the model judges the last 8 s of the turn in a worker thread; when its
verdict comes the pause's wait is set (see :func:`endpoint_wait_ms`), which may end the turn at
once. Speech before the verdict makes it stale: :meth:`TurnWait.cancel` drops it.
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
        self.last_probability = probability
        await apply(endpoint_wait_ms(self.policy, probability, self.expectation))

    def cancel(self) -> None:
        if self._verdict is not None:
            self._verdict.cancel()
            self._verdict = None
