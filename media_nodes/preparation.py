"""Agents made ready on the node before their calls, so a first call waits for nothing.

Preparing an agent compiles it (its examples embedded, its knowledge opened: see
:mod:`media_nodes.dialogue.factory`) and synthesizes its greeting into the TTS cache; what it says
word for word (prompts, reprompts, goodbyes) follows in the background.

The node prepares its default agent at start-up and every agent version the moment it is
activated: the activation reaches every node on the database as a PostgreSQL notification sent in
the activating transaction (:func:`shared.agents.store.agent_activations`), whichever process
activated it — the admin Lambda in AWS, the same process in ``parley demo``. A version a node never
heard about (activated while it was disconnected) is compiled on its first call instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from media_nodes.dialogue.protocol import AgentText
from media_nodes.pipeline.node import MediaNode
from media_nodes.tts.sentences import SentenceSplitter
from shared.agents.store import AgentActivation

log = logging.getLogger(__name__)

FILE_AGENT_VERSION = 0  # agents read from definition files have no stored version


def _pieces(text: str, *, first_clause: bool) -> list[str]:
    """``text`` cut as the pipeline cuts it: as a turn's first text (which may end its first
    piece at a comma) or as a later one."""
    splitter = SentenceSplitter() if first_clause else SentenceSplitter(len(text) + 1)
    pieces = splitter.push(text)
    rest = splitter.flush()
    return [*pieces, rest] if rest else pieces


async def warm_greeting(node: MediaNode, agent_id: str, tenant_id: str = "default") -> int:
    """Compile the agent (if it is not yet) and synthesize its greeting into the TTS cache;
    returns the pieces cached."""
    session = await node.dialogue.new_session(
        tenant_id=tenant_id, agent_id=agent_id, call_id="greeting-warmup", variables={}
    )
    text = "".join([o.text async for o in session.greeting() if isinstance(o, AgentText)])
    pieces = _pieces(text, first_clause=True)
    for piece in pieces:
        await node.voice.prepare(piece)
    return len(pieces)


async def warm_fixed_texts(node: MediaNode, agent_id: str, tenant_id: str = "default") -> int:
    """Synthesize what the agent says word for word (prompts, reprompts, goodbyes) into the TTS
    cache, so even the first calls hear them without a synthesis wait; returns the pieces
    cached."""
    session = await node.dialogue.new_session(
        tenant_id=tenant_id, agent_id=agent_id, call_id="prompt-warmup", variables={}
    )
    pieces: dict[str, None] = {}
    for text in session.fixed_texts():
        for first_clause in (True, False):
            pieces.update(dict.fromkeys(_pieces(text, first_clause=first_clause)))
    for piece in pieces:
        await node.voice.prepare(piece)  # at each rate it is not yet cached at
    return len(pieces)


class AgentPreparer:
    """Prepares agents on one node and remembers which version of each it has prepared."""

    def __init__(self, node: MediaNode) -> None:
        self.node = node
        self.prepared: dict[tuple[str, str], int] = {}
        self._changed = asyncio.Condition()
        self._prompts: set[asyncio.Task[None]] = set()

    async def prepare(
        self, tenant_id: str, agent_id: str, version: int = FILE_AGENT_VERSION
    ) -> None:
        """Compile the agent and cache its greeting (awaited); its prompts follow in the
        background. Raises what compiling raises (an unknown or invalid agent)."""
        started = time.monotonic()
        await warm_greeting(self.node, agent_id, tenant_id)
        async with self._changed:
            key = (tenant_id, agent_id)
            self.prepared[key] = max(version, self.prepared.get(key, version))
            self._changed.notify_all()
        log.info(
            "agent %s/%s v%d prepared in %.2f s",
            tenant_id,
            agent_id,
            version,
            time.monotonic() - started,
        )
        task = asyncio.create_task(self._cache_prompts(tenant_id, agent_id))
        self._prompts.add(task)
        task.add_done_callback(self._prompts.discard)

    async def _cache_prompts(self, tenant_id: str, agent_id: str) -> None:
        try:
            count = await warm_fixed_texts(self.node, agent_id, tenant_id)
            log.info("TTS cache: %d fixed pieces of %s/%s prepared", count, tenant_id, agent_id)
        except Exception as exc:  # calls still work, they just synthesize these on first use
            log.warning("fixed texts of %s/%s not cached: %s", tenant_id, agent_id, exc)

    async def wait_prepared(
        self, tenant_id: str, agent_id: str, version: int, timeout_s: float
    ) -> bool:
        """Wait until ``version`` (or a later one) of the agent is prepared; False on timeout."""

        def ready() -> bool:
            return self.prepared.get((tenant_id, agent_id), -1) >= version

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(ready), timeout_s)
            except TimeoutError:
                return False
        return True

    async def follow(self, activations: AsyncIterator[AgentActivation]) -> None:
        """Prepare each activated version as its activation arrives (until cancelled)."""
        async for activation in activations:
            try:
                await self.prepare(activation.tenant_id, activation.agent_id, activation.version)
            except Exception as exc:  # the agent's first call reports it, with the call
                log.warning(
                    "activated agent %s/%s v%d not prepared: %s",
                    activation.tenant_id,
                    activation.agent_id,
                    activation.version,
                    exc,
                )

    async def aclose(self) -> None:
        for task in list(self._prompts):
            task.cancel()
        await asyncio.gather(*self._prompts, return_exceptions=True)
