"""Who decided that a machine answered a call: exactly one decision per call.

Two parts can tell: Twilio's async AMD (its callback reaches the functions) and the media node's
own detectors (the beep, the long greeting, voicemail phrases). Each acts on the call - leaves
the voicemail message or hangs up - so both acting would play the message twice or cut one off.
The first to see a machine claims the call's verdict (Redis ``SET NX``, as stream claims are);
only the claimant acts, the other records its evidence and stands aside. The verdict is kept
for a day: long after the call, the campaign's settlement reads it for the attempt's outcome.
"""

from __future__ import annotations

from shared.cache.base import Cache

VERDICT_TTL_S = 24 * 3600.0
MEDIA_NODE = "media_node"
TWILIO = "twilio"


def verdict(source: str, evidence: str) -> str:
    """The stored form: ``media_node:beep``, ``twilio:machine_end_beep``."""
    return f"{source}:{evidence}"


def decided_by(value: str) -> str:
    return value.split(":", 1)[0]


class MachineVerdicts:
    def __init__(self, cache: Cache, *, ttl_s: float = VERDICT_TTL_S) -> None:
        self.cache = cache
        self.ttl_s = ttl_s

    @staticmethod
    def _key(call_sid: str) -> str:
        return f"machine-verdict:{call_sid}"

    async def claim(self, call_sid: str, value: str) -> str:
        """The call's verdict: ``value`` if this claim was first, else the one that was.
        Raises ``CacheUnavailable``."""
        key = self._key(call_sid)
        if await self.cache.claim(key, value.encode(), self.ttl_s):
            return value
        first = await self.cache.get(key)
        return first.decode() if first is not None else value

    async def get(self, call_sid: str) -> str | None:
        found = await self.cache.get(self._key(call_sid))
        return found.decode() if found is not None else None
