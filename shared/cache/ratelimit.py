"""Fixed-window rate limits (per API key, per caller number) on the cache's counters."""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared.cache.base import Cache


@dataclass(frozen=True)
class RateLimiter:
    cache: Cache
    limit: int
    window_s: float

    async def allow(self, subject: str) -> bool:
        """Count one hit for ``subject``; False once it exceeds ``limit`` in the current window."""
        window = int(time.time() // self.window_s)
        count = await self.cache.incr(f"rate:{subject}:{window}", self.window_s)
        return count <= self.limit
