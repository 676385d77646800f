"""Redis cache on redis-py's asyncio client."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.cache.base import Cache, CacheUnavailable

_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


def _as_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


class RedisCache(Cache):
    def __init__(self, url: str, *, key_prefix: str = "parley:") -> None:
        self.url = url
        self.key_prefix = key_prefix
        self._redis: Redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)

    def _k(self, key: str) -> str:
        return self.key_prefix + key

    def _down(self, exc: BaseException) -> CacheUnavailable:
        return CacheUnavailable(f"Redis at {self.url} is unreachable: {exc}")

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._k(key))
        except _DOWN as exc:
            raise self._down(exc) from None
        return _as_bytes(value)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            values = await self._redis.mget([self._k(k) for k in keys])
        except _DOWN as exc:
            raise self._down(exc) from None
        return [_as_bytes(v) for v in values]

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        try:
            if ttl_s is None:
                await self._redis.set(self._k(key), value)
            else:
                await self._redis.set(self._k(key), value, px=max(1, int(ttl_s * 1000)))
        except _DOWN as exc:
            raise self._down(exc) from None

    async def claim(self, key: str, value: bytes, ttl_s: float) -> bool:
        try:
            done = await self._redis.set(self._k(key), value, px=max(1, int(ttl_s * 1000)), nx=True)
        except _DOWN as exc:
            raise self._down(exc) from None
        return bool(done)

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(self._k(key))
        except _DOWN as exc:
            raise self._down(exc) from None

    async def incr(self, key: str, ttl_s: float) -> int:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(self._k(key))
                pipe.pexpire(self._k(key), max(1, int(ttl_s * 1000)), nx=True)
                count, _ = await pipe.execute()
            return int(count)
        except _DOWN as exc:
            raise self._down(exc) from None

    async def set_add(self, key: str, member: str) -> None:
        try:
            await self._redis.sadd(self._k(key), member)
        except _DOWN as exc:
            raise self._down(exc) from None

    async def set_remove(self, key: str, member: str) -> None:
        try:
            await self._redis.srem(self._k(key), member)
        except _DOWN as exc:
            raise self._down(exc) from None

    async def set_members(self, key: str) -> frozenset[str]:
        try:
            members = await self._redis.smembers(self._k(key))
        except _DOWN as exc:
            raise self._down(exc) from None
        return frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except _DOWN as exc:
            raise self._down(exc) from None

    async def close(self) -> None:
        await self._redis.aclose()
