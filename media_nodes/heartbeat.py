"""The node's entry in the media-node registry, refreshed so the voice webhook can route to it.

Every few seconds the node publishes its capacity, active calls and draining flag (the entry
expires after the registry's TTL, so a crashed node drops out by itself). Draining is published
at once, so the webhook stops routing calls here the moment SIGTERM arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from media_nodes.pipeline.node import MediaNode
from shared.cache.registry import NodeInfo, NodeRegistry

log = logging.getLogger(__name__)

INTERVAL_S = 5.0


def node_info(node: MediaNode) -> NodeInfo:
    return NodeInfo(
        node_id=node.node_id,
        url=node.settings.media_public_url,
        capacity=node.settings.media_max_calls,
        active_calls=len(node.calls),
        draining=node.draining,
    )


async def run_heartbeat(node: MediaNode, registry: NodeRegistry, stop: asyncio.Event) -> None:
    """Heartbeat until ``stop``; then remove the node from the registry."""
    published_draining = False
    try:
        while not stop.is_set():
            try:
                await registry.heartbeat(node_info(node))
                published_draining = node.draining
            except Exception as exc:  # registry down: calls in progress carry on
                log.warning("registry heartbeat failed: %s", exc)
            # Several beats per TTL, so one late beat never makes a live node look lost.
            for _ in range(int(min(INTERVAL_S, registry.ttl_s / 3) * 10)):
                if stop.is_set() or node.draining != published_draining:
                    break
                await asyncio.sleep(0.1)
    finally:
        with contextlib.suppress(Exception):
            await registry.remove(node.node_id)
