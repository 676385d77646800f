"""A call's events: numbered in order, published off the audio path, never lost.

Events go into a per-call queue that one task drains to the bus, so a slow broker cannot delay
audio. The bus is the node's one durable path: with Kafka it is ``shared.bus.durable.DurableBus``,
whose publish appends to memory and an fsynced spool that is replayed to Kafka; embedded it is the
in-process bus. Neither refuses while it runs. Should the bus refuse anyway (not started yet, or
stopped for a restart), the event stays at the head of the queue and is offered again with
backoff, so the call's events reach the bus in order once it takes them. There is no second,
private spool beside the bus's own.

A transport that shows the call to its caller (WebRTC's signalling socket) learns what happens as
it happens: the session hands it each :data:`SessionEvent` - every call event as it is emitted,
and the agent's :class:`AgentActivity` - through one callback, instead of asking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from shared.bus import EventBus
from shared.events.models import Event, Payload

log = logging.getLogger(__name__)

# Hand-overs that outlived their call's close (the bus was refusing): kept referenced so they
# go on until the bus takes their events.
_unfinished: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class AgentActivity:
    """What the agent is doing now, from the caller's side."""

    activity: Literal["listening", "thinking", "speaking"]


SessionEvent = Event | AgentActivity
SessionListener = Callable[[SessionEvent], None]


class CallEvents:
    def __init__(
        self,
        bus: EventBus,
        *,
        tenant_id: str,
        call_id: str,
        retry_backoff_s: tuple[float, float] = (0.05, 2.0),
        listener: SessionListener | None = None,
    ) -> None:
        self._bus = bus
        self._listener = listener
        self.tenant_id = tenant_id
        self.call_id = call_id
        self._backoff = retry_backoff_s
        self._seq = 0
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._drain(), name=f"events-{call_id}")
        self.emitted: list[Event] = []
        self._last_warning = 0.0

    def emit(self, payload: Payload) -> Event:
        event = Event(
            tenant_id=self.tenant_id,
            call_id=self.call_id,
            seq=self._seq,
            type=payload.type,
            payload=payload,
        )
        self._seq += 1
        self.emitted.append(event)
        self._queue.put_nowait(event)
        if self._listener is not None:
            self._listener(event)
        return event

    async def _drain(self) -> None:
        while (event := await self._queue.get()) is not None:
            await self._hand_over(event)

    async def _hand_over(self, event: Event) -> None:
        backoff = self._backoff[0]
        while True:
            try:
                await self._bus.publish(event)
                return
            except Exception as exc:  # any refusal: offer the same event again, in order
                now = time.monotonic()
                if now - self._last_warning > 10:
                    self._last_warning = now
                    log.warning(
                        "bus refused %s of call %s (%s); retrying until it takes it",
                        event.type,
                        self.call_id,
                        exc,
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff[1])

    async def close(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) until the bus has taken every event. Past ``timeout_s`` the hand-over
        goes on in the background, so a refusing bus delays the events but never loses them."""
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.error(
                "bus has not taken the events of call %s after %.0fs; still retrying",
                self.call_id,
                timeout_s,
            )
            _unfinished.add(self._task)
            self._task.add_done_callback(_unfinished.discard)
