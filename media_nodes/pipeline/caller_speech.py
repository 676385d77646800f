"""Caller speech that was transcribed but belongs to a turn that is not over yet.

A short "Yes," said over the agent is taken for a backchannel: the agent goes on and the words
answer nothing. They are still the caller's words, and usually the start of what comes next
("Yes, I've been there before" with a pause at the comma). So they are held here and merged into
the caller's next turn when it is stored; what is still held when the call ends is stored as a
turn of its own. Nothing the caller said is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Heard:
    """Transcribed caller speech; times are milliseconds since the call started."""

    text: str
    start_ms: int
    end_ms: int
    confidence: float | None = None


def merge(pieces: list[Heard]) -> Heard:
    """One piece of speech from several, in the order said: texts joined, the span covering all,
    the confidence of the least certain piece."""
    if not pieces:
        raise ValueError("nothing to merge")
    text = " ".join(p.text.strip() for p in pieces if p.text.strip())
    known = [p.confidence for p in pieces if p.confidence is not None]
    return Heard(
        text=text,
        start_ms=min(p.start_ms for p in pieces),
        end_ms=max(p.end_ms for p in pieces),
        confidence=min(known) if known else None,
    )


class PendingSpeech:
    def __init__(self) -> None:
        self._held: list[Heard] = []

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, piece: Heard) -> None:
        """Keep words that are not a turn yet."""
        if piece.text.strip():
            self._held.append(piece)

    def into(self, turn: Heard) -> Heard:
        """``turn`` with every held piece said before it merged in; nothing stays held."""
        pieces, self._held = [*self._held, turn], []
        return merge(pieces) if len(pieces) > 1 else turn

    def take(self) -> Heard | None:
        """Whatever is held, as one piece (the call is ending)."""
        if not self._held:
            return None
        pieces, self._held = self._held, []
        return merge(pieces)
