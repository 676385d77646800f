"""A per-tenant, per-agent knowledge base in Qdrant (local mode by default, a server in production).

Documents are chunked, embedded locally and stored with ``tenant_id`` and ``agent_id`` in the
payload; every search filters on both, so one tenant never reads another's passages.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import QdrantClient, models

from shared.knowledge.chunking import chunk_text
from shared.knowledge.embedder import DIMENSIONS, Embedder, Vectors, get_embedder

COLLECTION = "knowledge"
_NAMESPACE = uuid.UUID("6f1c1d36-1d7e-4b8e-9d4e-0c3b0b7d2a10")


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Passage:
    doc_id: str
    title: str
    heading: str
    text: str
    score: float


class KnowledgeBase:
    """Index and search documents; ``location`` is a folder (local mode), ':memory:' or a URL."""

    def __init__(
        self,
        location: str | Path = ":memory:",
        *,
        api_key: str | None = None,
        embedder: Embedder | None = None,
        collection: str = COLLECTION,
    ) -> None:
        text = str(location)
        self.remote = text.startswith(("http://", "https://"))
        if self.remote:
            self.client = QdrantClient(url=text, api_key=api_key)
        elif text == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            Path(text).mkdir(parents=True, exist_ok=True)
            self.client = QdrantClient(path=text)
        self.embedder = embedder or get_embedder()
        self.collection = collection
        # Local mode is not safe to use from several threads at once.
        self._lock = threading.Lock()
        self._ensure_collection()

    def _ensure_collection(self) -> None:
        with self._lock:
            if not self.client.collection_exists(self.collection):
                self.client.create_collection(
                    self.collection,
                    vectors_config=models.VectorParams(
                        size=DIMENSIONS, distance=models.Distance.COSINE
                    ),
                )
                # Local mode ignores payload indexes (and warns); a server uses them to filter.
                for key in ("tenant_id", "agent_id") if self.remote else ():
                    self.client.create_payload_index(
                        self.collection, key, models.PayloadSchemaType.KEYWORD
                    )

    @staticmethod
    def _filter(tenant_id: str, agent_id: str) -> models.Filter:
        return models.Filter(
            must=[
                models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant_id)),
                models.FieldCondition(key="agent_id", match=models.MatchValue(value=agent_id)),
            ]
        )

    def replace_documents(
        self, tenant_id: str, agent_id: str, documents: Sequence[Document]
    ) -> int:
        """Make ``documents`` the agent's whole knowledge base; return the number of passages."""
        rows = []
        for doc in documents:
            for chunk in chunk_text(doc.text):
                rows.append((doc, chunk))
        texts = [
            f"{chunk.heading}. {chunk.text}" if chunk.heading else chunk.text for _, chunk in rows
        ]
        vectors = self.embedder.embed(texts)
        points = [
            models.PointStruct(
                id=str(
                    uuid.uuid5(_NAMESPACE, f"{tenant_id}\0{agent_id}\0{doc.doc_id}\0{chunk.index}")
                ),
                vector=vector.tolist(),
                payload={
                    "tenant_id": tenant_id,
                    "agent_id": agent_id,
                    "doc_id": doc.doc_id,
                    "title": doc.title,
                    "heading": chunk.heading,
                    "text": chunk.text,
                },
            )
            for (doc, chunk), vector in zip(rows, vectors, strict=True)
        ]
        with self._lock:
            self.client.delete(
                self.collection,
                points_selector=models.FilterSelector(filter=self._filter(tenant_id, agent_id)),
            )
            if points:
                self.client.upsert(self.collection, points=points)
        return len(points)

    def search(
        self,
        tenant_id: str,
        agent_id: str,
        query: str,
        *,
        top_k: int = 3,
        vector: Vectors | None = None,
    ) -> list[Passage]:
        """Best passages for ``query`` within the tenant's agent, best first.

        ``vector`` is the query's embedding when the caller already has it.
        """
        if vector is None:
            vector = self.embedder.embed_one(query)
        with self._lock:
            hits = self.client.query_points(
                self.collection,
                query=vector.tolist(),
                query_filter=self._filter(tenant_id, agent_id),
                limit=top_k,
                with_payload=True,
            ).points
        return [
            Passage(
                doc_id=str(hit.payload.get("doc_id", "")),
                title=str(hit.payload.get("title", "")),
                heading=str(hit.payload.get("heading", "")),
                text=str(hit.payload.get("text", "")),
                score=float(hit.score),
            )
            for hit in hits
            if hit.payload is not None
        ]

    def close(self) -> None:
        with self._lock:
            self.client.close()


def content_hash(documents: Sequence[Document]) -> str:
    """Fingerprint of a document set, to skip re-indexing unchanged knowledge."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(doc.doc_id.encode() + b"\0" + doc.text.encode() + b"\0")
    return digest.hexdigest()
