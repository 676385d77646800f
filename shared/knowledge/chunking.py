"""Splits documents into passages small enough to read aloud and to embed well."""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADING = re.compile(r"^#{1,6}\s+(.*)$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str
    text: str


def chunk_text(text: str, *, max_chars: int = 600) -> list[Chunk]:
    """Paragraph-based chunks under their Markdown heading, merged up to ``max_chars``.

    A paragraph longer than ``max_chars`` is split at sentence ends. The heading travels with
    each chunk so a passage read on its own still says what it is about.
    """
    sections: list[tuple[str, list[str]]] = [("", [])]
    paragraph: list[str] = []

    def end_paragraph() -> None:
        if paragraph:
            sections[-1][1].append(" ".join(paragraph))
            paragraph.clear()

    for raw in text.splitlines():
        line = raw.strip()
        title = HEADING.match(line)
        if title:
            end_paragraph()
            sections.append((title.group(1).strip(), []))
        elif not line:
            end_paragraph()
        else:
            paragraph.append(line.lstrip("-* ").strip() if line[:2] in ("- ", "* ") else line)
    end_paragraph()

    chunks: list[Chunk] = []
    for heading, paragraphs in sections:
        current = ""
        for piece in _pieces(paragraphs, max_chars):
            if current and len(current) + 1 + len(piece) > max_chars:
                chunks.append(Chunk(len(chunks), heading, current))
                current = piece
            else:
                current = f"{current} {piece}".strip()
        if current:
            chunks.append(Chunk(len(chunks), heading, current))
    return chunks


def _pieces(paragraphs: list[str], max_chars: int) -> list[str]:
    pieces = []
    for paragraph in paragraphs:
        if len(paragraph) <= max_chars:
            pieces.append(paragraph)
            continue
        sentence_group = ""
        for sentence in SENTENCE_END.split(paragraph):
            if sentence_group and len(sentence_group) + 1 + len(sentence) > max_chars:
                pieces.append(sentence_group)
                sentence_group = sentence
            else:
                sentence_group = f"{sentence_group} {sentence}".strip()
        if sentence_group:
            pieces.append(sentence_group[: max_chars * 2])
    return pieces
