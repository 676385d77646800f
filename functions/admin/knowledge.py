"""Knowledge documents per agent: upload (chunk, embed, index in Qdrant), list, delete.

The agent's whole knowledge base is re-indexed on every change: its uploaded documents plus the
documents written inline in its active definition, so the two never overwrite each other.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Path, Response
from psycopg import AsyncConnection

from functions.admin.agents import AgentIdPath
from functions.admin.indexing import reindex_agent
from functions.admin.models import DocumentOut, DocumentUpload
from functions.common.auth import Principal, require
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError
from shared.knowledge import chunk_text

router = APIRouter(tags=["knowledge"], responses=ERROR_RESPONSES)

CONTENT_TYPES = {"text": "text/plain", "markdown": "text/markdown", "pdf_text": "application/pdf"}


async def _require_agent(conn: AsyncConnection[Any], tenant_id: str, agent_id: str) -> None:
    row = await fetch_one(
        conn, "SELECT 1 FROM agents WHERE tenant_id = %s AND agent_id = %s", (tenant_id, agent_id)
    )
    if row is None:
        raise ApiError(404, f"no agent '{agent_id}'")


@router.post(
    "/v1/agents/{agent_id}/documents",
    status_code=201,
    response_model=DocumentOut,
    summary="Add a knowledge document (chunked, embedded and indexed at once)",
)
async def upload_document(
    body: DocumentUpload,
    agent_id: str = AgentIdPath,
    principal: Principal = Depends(require("write")),
) -> DocumentOut:
    chunks = chunk_text(body.text)
    if not chunks:
        raise ApiError(422, "the document has no text to index")
    document_id = "doc_" + uuid.uuid4().hex
    async with db() as conn:
        await _require_agent(conn, principal.tenant_id, agent_id)
        async with conn.transaction():
            row = await fetch_one(
                conn,
                """INSERT INTO knowledge_documents (document_id, tenant_id, agent_id, title,
                       content_type, chunk_count, content)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)
                   RETURNING document_id, agent_id, title, content_type, chunk_count, created_at""",
                (
                    document_id,
                    principal.tenant_id,
                    agent_id,
                    body.title,
                    CONTENT_TYPES[body.format],
                    len(chunks),
                    body.text,
                ),
            )
            # Indexing inside the transaction: if it fails, the document is not kept either.
            await reindex_agent(conn, principal.tenant_id, agent_id)
    assert row is not None
    return DocumentOut(**row)


@router.get(
    "/v1/agents/{agent_id}/documents",
    response_model=list[DocumentOut],
    summary="An agent's knowledge documents",
)
async def list_documents(
    agent_id: str = AgentIdPath, principal: Principal = Depends(require("read"))
) -> list[DocumentOut]:
    async with db() as conn:
        await _require_agent(conn, principal.tenant_id, agent_id)
        rows = await fetch_all(
            conn,
            """SELECT document_id, agent_id, title, content_type, chunk_count, created_at
               FROM knowledge_documents WHERE tenant_id = %s AND agent_id = %s
               ORDER BY created_at, document_id""",
            (principal.tenant_id, agent_id),
        )
    return [DocumentOut(**r) for r in rows]


@router.delete(
    "/v1/agents/{agent_id}/documents/{document_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a knowledge document and its passages",
)
async def delete_document(
    agent_id: str = AgentIdPath,
    document_id: str = Path(max_length=100),
    principal: Principal = Depends(require("write")),
) -> Response:
    async with db() as conn, conn.transaction():
        cursor = await conn.execute(
            "DELETE FROM knowledge_documents WHERE document_id = %s AND tenant_id = %s "
            "AND agent_id = %s",
            (document_id, principal.tenant_id, agent_id),
        )
        if cursor.rowcount == 0:
            raise ApiError(404, f"no document '{document_id}'")
        await reindex_agent(conn, principal.tenant_id, agent_id)
    return Response(status_code=204)
