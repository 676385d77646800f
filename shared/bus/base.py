"""The bus interface shared by the Kafka and in-process implementations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from shared.events import Event, EventError, parse_event


class BusError(RuntimeError):
    """The bus failed; the message says what and where."""


class BusUnavailable(BusError):
    """The broker cannot be reached."""


@dataclass(frozen=True)
class ReceivedRecord:
    """One record as delivered: raw bytes plus where it came from, parsed lazily."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    # Kafka record headers: the producer's trace context (shared/tracing.py).
    headers: tuple[tuple[str, bytes], ...] = ()

    def event(self) -> Event:
        """The validated event; raises :class:`EventError` for a malformed record."""
        return parse_event(self.value)

    def try_event(self) -> tuple[Event | None, str | None]:
        try:
            return self.event(), None
        except EventError as exc:
            return None, str(exc)


class EventConsumer(ABC):
    """A member of a consumer group. Offsets are committed only when :meth:`commit` is called."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def poll(self, timeout_ms: int = 1000, max_records: int = 500) -> list[ReceivedRecord]:
        """The next records (possibly none); partition order is preserved."""

    @abstractmethod
    async def commit(self) -> None:
        """Commit the offsets of everything returned by :meth:`poll` so far."""


class EventBus(ABC):
    """Publishes events; a call's events are keyed by call id so they stay ordered."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def publish(self, event: Event) -> None:
        """Durably hand the event to the bus (acknowledged by the broker for Kafka)."""

    @abstractmethod
    async def publish_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Publish bytes as they are (dead letters, tests of malformed input)."""

    @abstractmethod
    def consumer(self, group_id: str, *, topics: list[str] | None = None) -> EventConsumer:
        """A consumer of ``topics`` (default: the call-events topic) in ``group_id``."""

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
