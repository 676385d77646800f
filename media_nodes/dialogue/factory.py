"""Creates dialogue sessions: finds the agent, compiles it once per version, shares the models.

The media node owns one :class:`AgentDialogueFactory` for the process. Agents come from the
database (the tenant's active version) when a pool is given, otherwise from definition files in
``settings.agents_dir``. The embedding model is loaded once per process; an agent's examples are
embedded and its knowledge indexed once per version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from media_nodes.dialogue.engine import AgentSession
from media_nodes.dialogue.llm import LlmClient
from media_nodes.dialogue.runtime import AgentRuntime, build_classifier, slot_types
from shared.agents.loader import AgentDefinitionError, LoadedAgent, find_agent, load_agent_file
from shared.agents.store import AgentNotFound, load_agent_version
from shared.knowledge.embedder import Embedder, get_embedder
from shared.knowledge.store import Document, KnowledgeBase, content_hash
from shared.settings import Settings

log = logging.getLogger(__name__)


class AgentUnavailable(LookupError):
    """The agent does not exist for the tenant, or its definition is invalid."""


class AgentDialogueFactory:
    """Implements :class:`media_nodes.dialogue.protocol.DialogueFactory`."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: AsyncConnectionPool | None = None,
        knowledge: KnowledgeBase | None = None,
        embedder: Embedder | None = None,
        http: httpx.AsyncClient | None = None,
        llm: LlmClient | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self._embedder = embedder
        self._knowledge = knowledge
        self._own_knowledge = knowledge is None
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(follow_redirects=False)
        self._own_llm = llm is None
        self.llm = llm
        if llm is None and settings.llm_base_url:
            self.llm = LlmClient(
                base_url=settings.llm_base_url,
                api_key=settings.llm_api_key.get_secret_value(),
                model=settings.llm_model,
                timeout_s=settings.llm_timeout_s,
            )
        self._runtimes: dict[tuple[str, str], tuple[Any, AgentRuntime]] = {}
        # How often each (tenant, agent) was compiled: once per version when all goes well.
        self.compilations: Counter[tuple[str, str]] = Counter()
        self._indexed: dict[tuple[str, str], str] = {}
        self._lock = asyncio.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder()
        return self._embedder

    @property
    def knowledge(self) -> KnowledgeBase:
        if self._knowledge is None:
            location: str | Path = self.settings.qdrant_url or (self.settings.data_dir / "qdrant")
            key = self.settings.qdrant_api_key
            self._knowledge = KnowledgeBase(
                location,
                api_key=key.get_secret_value() if key else None,
                embedder=self.embedder,
            )
        return self._knowledge

    async def new_session(
        self, *, tenant_id: str, agent_id: str, call_id: str, variables: dict[str, str]
    ) -> AgentSession:
        runtime = await self.runtime(tenant_id, agent_id)
        return AgentSession(runtime, call_id=call_id, variables=variables)

    async def runtime(self, tenant_id: str, agent_id: str) -> AgentRuntime:
        """The compiled agent (cached per version; a new active version recompiles)."""
        loaded, cache_key = await self._load(tenant_id, agent_id)
        cached = self._runtimes.get((tenant_id, agent_id))
        if cached and cached[0] == cache_key:
            return cached[1]
        async with self._lock:
            cached = self._runtimes.get((tenant_id, agent_id))
            if cached and cached[0] == cache_key:
                return cached[1]
            started = time.monotonic()
            runtime = await self.compile(tenant_id, loaded)
            self._runtimes[(tenant_id, agent_id)] = (cache_key, runtime)
            self.compilations[(tenant_id, agent_id)] += 1
            log.info(
                "compiled agent %s/%s (%s) in %.2f s",
                tenant_id,
                agent_id,
                loaded.source,
                time.monotonic() - started,
            )
            return runtime

    async def _load(self, tenant_id: str, agent_id: str) -> tuple[LoadedAgent, Any]:
        if self.pool is not None:
            try:
                async with self.pool.connection() as conn:
                    loaded = await load_agent_version(conn, tenant_id, agent_id)
                return loaded, ("db", loaded.version)
            except AgentNotFound:
                if self.settings.production:
                    raise AgentUnavailable(
                        f"no agent '{agent_id}' for tenant '{tenant_id}'"
                    ) from None
            except AgentDefinitionError as exc:
                raise AgentUnavailable(f"stored definition is invalid: {exc}") from None
            except (psycopg.Error, PoolTimeout) as exc:
                raise AgentUnavailable(
                    f"cannot read agent '{agent_id}': database unavailable ({exc})"
                ) from None
        try:
            path = find_agent(self.settings.agents_dir, agent_id)
        except FileNotFoundError as exc:
            raise AgentUnavailable(str(exc)) from None
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        stamp = max((p.stat().st_mtime_ns for p in files), default=0)
        cached = self._runtimes.get((tenant_id, agent_id))
        if cached and cached[0] == ("file", str(path), stamp):
            return cached[1].loaded, cached[0]
        try:
            loaded = await asyncio.to_thread(load_agent_file, path)
        except AgentDefinitionError as exc:
            raise AgentUnavailable(str(exc)) from None
        return loaded, ("file", str(path), stamp)

    async def compile(self, tenant_id: str, loaded: LoadedAgent) -> AgentRuntime:
        """Embed the agent's examples and index its knowledge (off the event loop)."""
        return await asyncio.to_thread(self._compile, tenant_id, loaded)

    def _compile(self, tenant_id: str, loaded: LoadedAgent) -> AgentRuntime:
        definition = loaded.definition
        answers = any(state.answer for state in definition.states.values())
        knowledge = self.knowledge if answers or loaded.knowledge else None
        # Agents from the database are indexed by the admin API when uploaded (with the
        # tenant's uploaded documents); re-indexing here would drop those. File agents (dev)
        # are indexed here, again only when their documents change.
        from_files = loaded.version is None
        if knowledge is not None and from_files:
            documents = [Document(k.doc_id, k.title, k.text) for k in loaded.knowledge]
            fingerprint = content_hash(documents)
            if self._indexed.get((tenant_id, definition.id)) != fingerprint:
                count = knowledge.replace_documents(tenant_id, definition.id, documents)
                self._indexed[(tenant_id, definition.id)] = fingerprint
                log.info("indexed %d passages for %s/%s", count, tenant_id, definition.id)
        threshold = definition.intent_threshold
        return AgentRuntime(
            loaded=loaded,
            tenant_id=tenant_id,
            classifier=build_classifier(definition, self.embedder),
            threshold=threshold if threshold is not None else self.settings.intent_threshold,
            http=self.http,
            knowledge=knowledge,
            llm=self.llm,
            slot_types=slot_types(definition),
        )

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()
        if self._own_llm and self.llm is not None:
            await self.llm.aclose()
        if self._own_knowledge and self._knowledge is not None:
            await asyncio.to_thread(self._knowledge.close)
