"""A call's events: numbered in order, published off the audio path, never lost.

Events go into a per-call queue that one task drains to the bus, so a slow broker cannot delay
audio. If the bus refuses an event, it is appended to ``data_dir/event-fallback/events.jsonl``
(one event JSON per line, the bus's own format) instead of being dropped. In production the bus is
``shared.bus.durable.DurableBus``, whose publish only appends to memory and an fsynced spool.

A transport that shows the call to its caller (WebRTC's signalling socket) learns what happens as
it happens: the session hands it each :data:`SessionEvent` - every call event as it is emitted,
and the agent's :class:`AgentActivity` - through one callback, instead of asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.bus import EventBus
from shared.events.models import Event, Payload

log = logging.getLogger(__name__)


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
        spool_dir: Path,
        listener: SessionListener | None = None,
    ) -> None:
        self._bus = bus
        self._listener = listener
        self.tenant_id = tenant_id
        self.call_id = call_id
        self._spool = spool_dir / "events.jsonl"
        self._seq = 0
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._drain(), name=f"events-{call_id}")
        self.emitted: list[Event] = []
        self._inflight: Event | None = None

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
            self._inflight = event
            try:
                await self._bus.publish(event)
            except Exception as exc:  # any bus failure: keep the event locally
                log.warning(
                    "bus refused %s of call %s (%s); spooling", event.type, self.call_id, exc
                )
                self._write_spool(event)
            self._inflight = None

    def _write_spool(self, event: Event) -> None:
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        with self._spool.open("ab") as spool:
            spool.write(event.to_json() + b"\n")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Publish what is queued (bounded); spool whatever the bus did not take in time."""
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if self._inflight is not None:
                self._write_spool(self._inflight)
            while not self._queue.empty():
                event = self._queue.get_nowait()
                if event is not None:
                    self._write_spool(event)
