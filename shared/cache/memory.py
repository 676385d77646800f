"""In-process cache with the same semantics as the Redis one (expiry included)."""

from __future__ import annotations

import builtins
import time

from shared.cache.base import Cache


class InProcessCache(Cache):
    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._sets: dict[str, builtins.set[str]] = {}

    def _now(self) -> float:
        return self._clock()  # type: ignore[operator,no-any-return]

    def _live(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._now():
            del self._values[key]
            return None
        return value

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self._live(k) for k in keys]

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._values[key] = (value, None if ttl_s is None else self._now() + ttl_s)

    async def claim(self, key: str, value: bytes, ttl_s: float) -> bool:
        if self._live(key) is not None:
            return False
        self._values[key] = (value, self._now() + ttl_s)
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self._sets.pop(key, None)

    async def incr(self, key: str, ttl_s: float) -> int:
        current = self._live(key)
        if current is None:
            self._values[key] = (b"1", self._now() + ttl_s)
            return 1
        count = int(current) + 1
        self._values[key] = (str(count).encode(), self._values[key][1])
        return count

    async def set_add(self, key: str, member: str) -> None:
        self._sets.setdefault(key, builtins.set()).add(member)

    async def set_remove(self, key: str, member: str) -> None:
        self._sets.get(key, builtins.set()).discard(member)

    async def set_members(self, key: str) -> frozenset[str]:
        return frozenset(self._sets.get(key, ()))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
