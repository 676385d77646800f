"""Cache and session store: Redis in production, in-process for the demo, one interface."""

from shared.cache.base import Cache, CacheUnavailable
from shared.cache.factory import create_cache
from shared.cache.memory import InProcessCache
from shared.cache.ratelimit import RateLimiter
from shared.cache.registry import NodeInfo, NodeRegistry
from shared.cache.streams import StreamClaims

__all__ = [
    "Cache",
    "CacheUnavailable",
    "InProcessCache",
    "NodeInfo",
    "NodeRegistry",
    "RateLimiter",
    "StreamClaims",
    "create_cache",
]
