"""Keeps an agent's knowledge vectors in step with its documents and active definition."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg import AsyncConnection

from functions.common.db import fetch_all
from functions.common.runtime import runtime
from shared.agents.store import AgentNotFound, load_agent_version
from shared.knowledge import Document


async def reindex_agent(conn: AsyncConnection[Any], tenant_id: str, agent_id: str) -> int:
    """Rebuild the agent's vectors from its documents; return the number of passages."""
    rows = await fetch_all(
        conn,
        "SELECT document_id, title, content FROM knowledge_documents "
        "WHERE tenant_id = %s AND agent_id = %s ORDER BY created_at, document_id",
        (tenant_id, agent_id),
    )
    documents = [Document(r["document_id"], r["title"], r["content"]) for r in rows]
    try:
        loaded = await load_agent_version(conn, tenant_id, agent_id)
        documents += [Document(k.doc_id, k.title, k.text) for k in loaded.knowledge]
    except AgentNotFound:
        pass
    knowledge = runtime().knowledge()
    return int(await asyncio.to_thread(knowledge.replace_documents, tenant_id, agent_id, documents))
