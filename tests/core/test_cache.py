"""Cache, node registry and rate limits, on both backends (Redis is the real server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.cache import (
    Cache,
    CacheUnavailable,
    InProcessCache,
    NodeInfo,
    NodeRegistry,
    RateLimiter,
)
from shared.cache.redis import RedisCache


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield InProcessCache()
        return
    url = request.getfixturevalue("redis_url")
    backend = RedisCache(url, key_prefix=request.getfixturevalue("redis_prefix"))
    try:
        yield backend
    finally:
        await backend.close()


async def test_set_get_delete_with_ttl(cache: Cache) -> None:
    await cache.set_json("session:1", {"state": "greeting", "slots": {"n": 4}}, ttl_s=0.3)
    assert await cache.get_json("session:1") == {"state": "greeting", "slots": {"n": 4}}
    await asyncio.sleep(0.45)
    assert await cache.get("session:1") is None
    await cache.set("k", b"v")
    await cache.delete("k")
    assert await cache.get_many(["k", "missing"]) == [None, None]


async def test_counter_window(cache: Cache) -> None:
    limiter = RateLimiter(cache, limit=3, window_s=60)
    assert [await limiter.allow("key-1") for _ in range(5)] == [True, True, True, False, False]
    assert await limiter.allow("key-2") is True


async def test_registry_picks_least_loaded_healthy_node(cache: Cache) -> None:
    registry = NodeRegistry(cache, ttl_s=0.5)
    await registry.heartbeat(NodeInfo("busy", "wss://busy", capacity=10, active_calls=8))
    await registry.heartbeat(NodeInfo("idle", "wss://idle", capacity=10, active_calls=1))
    await registry.heartbeat(NodeInfo("full", "wss://full", capacity=2, active_calls=2))
    await registry.heartbeat(
        NodeInfo("drain", "wss://drain", capacity=10, active_calls=0, draining=True)
    )
    picked = await registry.pick()
    assert picked is not None and picked.node_id == "idle"
    # Heartbeats stop: the node expires and is pruned.
    await asyncio.sleep(0.6)
    await registry.heartbeat(NodeInfo("busy", "wss://busy", capacity=10, active_calls=8))
    assert [n.node_id for n in await registry.nodes()] == ["busy"]
    assert (await registry.pick()).node_id == "busy"  # type: ignore[union-attr]
    await registry.remove("busy")
    assert await registry.pick() is None


async def test_unreachable_redis_is_named() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0")
    with pytest.raises(CacheUnavailable, match=r"Redis at redis://127\.0\.0\.1:1/0"):
        await cache.ping()
    await cache.close()
