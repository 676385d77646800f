"""One media stream per call, across every media node and every process.

A session token names one call. The first stream that presents a token for a call claims the
call (Redis ``SET NX`` in production), so a replayed token, or a second token for the same call,
is refused by whichever node it reaches. The claim outlives any token the webhook can issue for
the call: the webhook stops issuing tokens once a call has a stream (it checks the same claim),
and tokens expire within minutes.
"""

from __future__ import annotations

from shared.cache.base import Cache

CLAIM_TTL_S = 24 * 3600.0


class StreamClaims:
    def __init__(self, cache: Cache, *, ttl_s: float = CLAIM_TTL_S) -> None:
        self.cache = cache
        self.ttl_s = ttl_s

    @staticmethod
    def _key(call_id: str) -> str:
        return f"stream:{call_id}"

    async def claim(self, call_id: str, stream_sid: str) -> bool:
        """True if this stream is the call's first; raises ``CacheUnavailable``."""
        return await self.cache.claim(self._key(call_id), stream_sid.encode(), self.ttl_s)

    async def claimed(self, call_id: str) -> bool:
        """Has a stream already been started for the call?"""
        return await self.cache.get(self._key(call_id)) is not None
