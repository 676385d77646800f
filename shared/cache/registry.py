"""The media-node registry: nodes heartbeat their load; the voice webhook picks one.

A node's entry expires unless refreshed, so a crashed node drops out within ``ttl_s``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from shared.cache.base import Cache

_INDEX = "nodes"


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    url: str  # wss:// base URL Twilio connects to
    capacity: int
    active_calls: int
    draining: bool = False
    heartbeat_at: float = 0.0

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.active_calls)

    @property
    def load(self) -> float:
        return self.active_calls / self.capacity if self.capacity else 1.0


class NodeRegistry:
    def __init__(self, cache: Cache, *, ttl_s: float = 15.0) -> None:
        self.cache = cache
        self.ttl_s = ttl_s

    async def heartbeat(self, node: NodeInfo) -> None:
        entry = asdict(node) | {"heartbeat_at": time.time()}
        await self.cache.set_json(f"node:{node.node_id}", entry, ttl_s=self.ttl_s)
        await self.cache.set_add(_INDEX, node.node_id)

    async def remove(self, node_id: str) -> None:
        await self.cache.delete(f"node:{node_id}")
        await self.cache.set_remove(_INDEX, node_id)

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; expired ones are pruned from the index."""
        ids = sorted(await self.cache.set_members(_INDEX))
        raw = await self.cache.get_many([f"node:{i}" for i in ids])
        live = []
        for node_id, value in zip(ids, raw, strict=True):
            if value is None:
                await self.cache.set_remove(_INDEX, node_id)
                continue
            live.append(NodeInfo(**json.loads(value)))
        return live

    async def pick(self) -> NodeInfo | None:
        """The healthy, non-draining node with free capacity and the lowest load."""
        candidates = [n for n in await self.nodes() if not n.draining and n.free > 0]
        if not candidates:
            return None
        return min(candidates, key=lambda n: (n.load, -n.free, n.node_id))
