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


# Piper synthesizes a piece whole before any of it plays, at up to ~0.25 s per second of speech
# on a busy 2-core node (measured 0.06-0.12 idle). A piece at most GROWTH times as long as the
# one before is ready before that one has finished playing (0.25 x 2.5 < 1), so a long sentence
# cut this way plays without a gap; a first piece of FIRST_PIECE_CHARS starts the reply quickly.
GROWTH = 2.5
FIRST_PIECE_CHARS = 40
MIN_PIECE_CHARS = 12  # shorter fragments sound clipped and gain nothing
_BREAK = re.compile(
    r"(?P<clause>[,;:])(?=\s)|(?P<word>\s)(?=(?:and|or|but|then|on|at|for|to)\s)|(?<!\d)\s|\s(?!\d)"
)


def fit_pieces(text: str, previous_chars: int) -> list[str]:
    """``text`` (one sentence to be synthesized) cut so each piece is at most :data:`GROWTH`
    times the length of the piece before it (``previous_chars``; 0 for a reply's first piece),
    preferring clause breaks, then a word before a conjunction or preposition, then any word but
    one inside a run of digits (a read-back number stays one phrase)."""
    limit = FIRST_PIECE_CHARS if previous_chars == 0 else round(GROWTH * previous_chars)
    limit = max(limit, MIN_PIECE_CHARS)
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit + MIN_PIECE_CHARS:  # a little over is not worth a cut
        cut = _best_cut(rest, limit)
        if cut is None:
            break
        piece, rest = rest[:cut].strip(), rest[cut:].strip()
        pieces.append(piece)
        limit = max(round(GROWTH * len(piece)), MIN_PIECE_CHARS)
    if rest:
        pieces.append(rest)
    return pieces


def _best_cut(text: str, limit: int) -> int | None:
    """Where to end a piece of at most ``limit`` chars: the best break in ``text[:limit]`` that
    leaves at least MIN_PIECE_CHARS on both sides, else the first break after it."""
    best: tuple[int, int] | None = None  # (rank, end): lower rank is a better kind of break
    for match in _BREAK.finditer(text):
        end = match.end() if match.group("clause") else match.start()
        if end < MIN_PIECE_CHARS or len(text[end:].strip()) < MIN_PIECE_CHARS:
            continue
        if end > limit:
            return end if best is None else best[1]
        rank = 0 if match.group("clause") else 1 if match.group("word") else 2
        # among breaks of one kind the latest (the longest piece) wins
        if best is None or (rank, -end) < (best[0], -best[1]):
            best = (rank, end)
    return None if best is None else best[1]
