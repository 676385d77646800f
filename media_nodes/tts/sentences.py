"""Cut streamed agent text into speakable pieces so TTS can start before the text is complete."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (or …) followed by whitespace; "Mr." / "3.5" / "e.g." do not end one.
_SENTENCE_END = re.compile(
    r"(?<!\bMr)(?<!\bMrs)(?<!\bDr)(?<!\bMs)(?<!\be\.g)(?<!\bi\.e)[.!?…]+[\"')\]]*\s"
)
# The first piece of a turn may also end at a clause break, so the caller hears something sooner.
_CLAUSE_END = re.compile(r"[,;:]\s")


class SentenceSplitter:
    def __init__(self, first_clause_min_chars: int = 8) -> None:
        self._buffer = ""
        self._first = True
        self._first_clause_min_chars = first_clause_min_chars

    def push(self, text: str) -> list[str]:
        """Add streamed text; return the pieces now complete."""
        self._buffer += text
        pieces: list[str] = []
        while True:
            match = _SENTENCE_END.search(self._buffer)
            if self._first:
                clause = _CLAUSE_END.search(self._buffer, self._first_clause_min_chars)
                if clause and (match is None or clause.end() < match.end()):
                    match = clause
            if match is None:
                return pieces
            piece, self._buffer = self._buffer[: match.end()].strip(), self._buffer[match.end() :]
            if piece:
                pieces.append(piece)
                self._first = False

    def flush(self) -> str | None:
        """The rest of the text (the turn is complete)."""
        piece, self._buffer = self._buffer.strip(), ""
        return piece or None
