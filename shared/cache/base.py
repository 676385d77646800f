"""The key-value primitives Parley needs; session state, the node registry and rate limits are
built on them (see registry.py, ratelimit.py) so both backends share that logic."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any


class CacheUnavailable(RuntimeError):
    """The cache server cannot be reached; the message names it."""


class Cache(ABC):
    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None: ...

    @abstractmethod
    async def claim(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Set ``key`` only if it is absent (atomically); True if this call set it."""

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def incr(self, key: str, ttl_s: float) -> int:
        """Increment a counter; the first increment starts its ``ttl_s`` expiry."""

    @abstractmethod
    async def set_add(self, key: str, member: str) -> None: ...

    @abstractmethod
    async def set_remove(self, key: str, member: str) -> None: ...

    @abstractmethod
    async def set_members(self, key: str) -> frozenset[str]: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`CacheUnavailable` if the backend does not answer."""

    @abstractmethod
    async def close(self) -> None: ...

    async def get_json(self, key: str) -> Any:
        raw = await self.get(key)
        return None if raw is None else json.loads(raw)

    async def set_json(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        await self.set(key, json.dumps(value, separators=(",", ":")).encode(), ttl_s)
