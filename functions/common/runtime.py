"""Process-wide resources of a function: settings, the database pool and the cache.

A Lambda container keeps one event loop across invocations (Mangum reuses it), so the pool and
the Redis client are created on first use and then reused. Both are bound to the loop that made
them: if a different loop asks (tests, a restarted server), fresh ones are made for it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from functions.common.config import FunctionSettings
from shared.cache import Cache, NodeRegistry, create_cache
from shared.db import create_pool
from shared.settings import load_settings


@dataclass
class _LoopResources:
    loop: asyncio.AbstractEventLoop
    pool: AsyncConnectionPool | None = None
    cache: Cache | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Runtime:
    def __init__(
        self,
        settings: FunctionSettings | None = None,
        *,
        cache_prefix: str = "parley:",
        cache: Cache | None = None,
        knowledge: Any = None,
    ) -> None:
        self._settings = settings
        self.cache_prefix = cache_prefix
        # An in-process cache shared with a media node running in the same process (the demo).
        self._shared_cache = cache
        self._by_loop: _LoopResources | None = None
        # A knowledge base shared with an in-process media node: Qdrant's local mode allows one
        # client per folder.
        self._knowledge: Any = knowledge
        self._own_knowledge = knowledge is None
        self._knowledge_lock = threading.Lock()

    @property
    def settings(self) -> FunctionSettings:
        if self._settings is None:
            self._settings = load_settings(FunctionSettings)
        return self._settings

    def _resources(self) -> _LoopResources:
        loop = asyncio.get_running_loop()
        if self._by_loop is None or self._by_loop.loop is not loop:
            self._by_loop = _LoopResources(loop)
        return self._by_loop

    async def pool(self) -> AsyncConnectionPool:
        res = self._resources()
        if res.pool is None:
            async with res.lock:
                if res.pool is None:
                    res.pool = await create_pool(
                        self.settings.database_url,
                        min_size=1,
                        max_size=self.settings.database_pool_max,
                    )
        return res.pool

    def cache(self) -> Cache:
        if self._shared_cache is not None:
            return self._shared_cache
        res = self._resources()
        if res.cache is None:
            res.cache = create_cache(self.settings, key_prefix=self.cache_prefix)
        return res.cache

    def registry(self) -> NodeRegistry:
        return NodeRegistry(self.cache())

    def knowledge(self) -> Any:
        """The knowledge base (Qdrant server, or local mode under data_dir), opened once."""
        with self._knowledge_lock:
            if self._knowledge is None:
                from shared.knowledge import KnowledgeBase

                s = self.settings
                location = s.qdrant_url or str(s.data_dir / "qdrant")
                key = s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None
                self._knowledge = KnowledgeBase(location, api_key=key)
            return self._knowledge

    async def close(self) -> None:
        """Close what this loop opened (local server shutdown, tests)."""
        res = self._by_loop
        if res is not None and res.loop is asyncio.get_running_loop():
            if res.pool is not None:
                await res.pool.close()
            if res.cache is not None:
                await res.cache.close()
        self._by_loop = None
        with self._knowledge_lock:
            if self._knowledge is not None and self._own_knowledge:
                self._knowledge.close()
                self._knowledge = None


_runtime = Runtime()


def runtime() -> Runtime:
    return _runtime


def configure(
    settings: FunctionSettings | None = None,
    *,
    cache_prefix: str = "parley:",
    cache: Cache | None = None,
    knowledge: Any = None,
) -> Runtime:
    """Replace the process runtime (tests, the local server, the demo); returns the new one."""
    global _runtime
    _runtime = Runtime(settings, cache_prefix=cache_prefix, cache=cache, knowledge=knowledge)
    return _runtime
