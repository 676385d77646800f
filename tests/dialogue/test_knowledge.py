"""Knowledge base: chunking, local embeddings, Qdrant with tenant and agent filters."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.knowledge.chunking import chunk_text
from shared.knowledge.embedder import Embedder
from shared.knowledge.store import Document, KnowledgeBase


def test_embeddings_are_normalised_and_meaningful(embedder: Embedder) -> None:
    vectors = embedder.embed(["where is my parcel", "track my package", "I like turtles", ""])
    assert vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_chunks_keep_headings_and_size() -> None:
    text = "# Refunds\n\n" + ("Refunds take five days. " * 60) + "\n\n# Shipping\n\nFree over $50."
    chunks = chunk_text(text, max_chars=300)
    assert chunks[0].heading == "Refunds" and chunks[-1].heading == "Shipping"
    assert all(len(c.text) <= 300 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_search_is_filtered_by_tenant_and_agent(tmp_path: Path, embedder: Embedder) -> None:
    kb = KnowledgeBase(tmp_path / "qdrant", embedder=embedder)
    kb.replace_documents("t1", "shop", [Document("a", "A", "# Refunds\n\nRefunds take five days.")])
    kb.replace_documents(
        "t2", "shop", [Document("b", "B", "# Refunds\n\nRefunds take ninety days.")]
    )
    kb.replace_documents("t1", "other", [Document("c", "C", "# Refunds\n\nNo refunds, ever.")])
    hits = kb.search("t1", "shop", "how long do refunds take", top_k=5)
    assert [h.doc_id for h in hits] == ["a"]
    assert hits[0].score > 0.5
    assert [h.doc_id for h in kb.search("t2", "shop", "refunds", top_k=5)] == ["b"]
    assert kb.search("t3", "shop", "refunds") == []
    # Replacing an agent's documents drops the old ones.
    kb.replace_documents("t1", "shop", [Document("d", "D", "Opening hours are nine to five.")])
    assert [h.doc_id for h in kb.search("t1", "shop", "refunds", top_k=5)] == ["d"]
    kb.close()
    reopened = KnowledgeBase(tmp_path / "qdrant", embedder=embedder)  # local mode persists
    assert [h.doc_id for h in reopened.search("t2", "shop", "refunds")] == ["b"]
    reopened.close()
