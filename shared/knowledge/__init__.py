"""Knowledge base: local embeddings (MiniLM ONNX), chunking, Qdrant storage with tenant filters."""

from shared.knowledge.chunking import Chunk, chunk_text
from shared.knowledge.embedder import Embedder, EmbedderUnavailable, get_embedder
from shared.knowledge.store import Document, KnowledgeBase, Passage

__all__ = [
    "Chunk",
    "Document",
    "Embedder",
    "EmbedderUnavailable",
    "KnowledgeBase",
    "Passage",
    "chunk_text",
    "get_embedder",
]
