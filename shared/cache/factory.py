"""Pick the cache from settings: Redis when a URL is configured, else in-process."""

from __future__ import annotations

from shared.cache.base import Cache
from shared.cache.memory import InProcessCache
from shared.settings import Settings


def create_cache(settings: Settings, *, key_prefix: str = "parley:") -> Cache:
    if settings.redis_url:
        from shared.cache.redis import RedisCache

        return RedisCache(settings.redis_url, key_prefix=key_prefix)
    return InProcessCache()
