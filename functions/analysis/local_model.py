"""Sentiment and success without an LLM: the caller's turns, embedded with the local MiniLM model
(shared/knowledge/embedder.py), against the prototype phrases of each class (nearest prototype).

Each turn is scored against each class by the mean of its three most similar prototypes; a
softmax turns the scores into the turn's shares, and the call's shares are the turns' weighted
mean. Later turns weigh more (how a call ends says most about how it went), one- or two-word
turns less (a 'yes' or an order number says little about a feeling), and for success the last
turns weigh most of all. How well this does is measured on a labelled set of calls written apart
from the prototypes (tests/functions/data/labelled_calls.json; docs/api.md has the figures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

from functions.analysis import prototypes
from shared.knowledge.embedder import Embedder, Vectors

MODEL_NAME = "all-MiniLM-L6-v2 (nearest prototype)"
TOP_K = 3
TEMPERATURE = 0.05
SHORT_WORDS = 2
SHORT_WEIGHT = 0.3
# A call reads as neutral unless one side's share beats the other's by this much.
NEUTRAL_MARGIN = 0.1

Shares = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Sentiment:
    label: str  # positive, neutral or negative
    score: float  # share positive minus share negative, -1..1


@dataclass(frozen=True)
class Success:
    success: bool | None  # None: the caller said nothing to judge by
    reason: str


class _Classes:
    """One set of prototype phrases, embedded once."""

    def __init__(self, embedder: Embedder, phrases: Mapping[str, Sequence[str]]) -> None:
        self.names = list(phrases)
        self.vectors = [embedder.embed(list(phrases[name])) for name in self.names]

    def turn_shares(self, turns: Vectors) -> Shares:
        """One row per turn: each class's share (rows sum to 1)."""
        scores = np.stack(
            [np.sort(turns @ v.T, axis=1)[:, -TOP_K:].mean(axis=1) for v in self.vectors], axis=1
        ).astype(np.float64)
        exp = np.exp((scores - scores.max(axis=1, keepdims=True)) / TEMPERATURE)
        return cast(Shares, exp / exp.sum(axis=1, keepdims=True))


class LocalJudge:
    """Loaded once per worker process (embedding the prototypes takes a few milliseconds)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.sentiments = _Classes(embedder, prototypes.SENTIMENT)
        self.outcomes = _Classes(embedder, prototypes.SUCCESS)

    def judge(self, caller_turns: Sequence[str]) -> tuple[Sentiment, Success]:
        turns = [t.strip() for t in caller_turns if t.strip()]
        if not turns:
            return Sentiment("neutral", 0.0), Success(None, "the caller said nothing")
        vectors = self.embedder.embed(turns)
        return self._sentiment(turns, vectors), self._success(turns, vectors)

    def _sentiment(self, turns: Sequence[str], vectors: Vectors) -> Sentiment:
        shares = self.sentiments.turn_shares(vectors)
        n = len(turns)
        weights = np.array(
            [(0.5 + (i + 1) / n) * _informative(t) for i, t in enumerate(turns)], dtype=np.float64
        )
        call = weights @ shares / weights.sum()
        positive = call[self.sentiments.names.index("positive")]
        negative = call[self.sentiments.names.index("negative")]
        score = float(positive - negative)
        if abs(score) < NEUTRAL_MARGIN:
            label = "neutral"
        else:
            label = "positive" if score > 0 else "negative"
        return Sentiment(label, round(score, 4))

    def _success(self, turns: Sequence[str], vectors: Vectors) -> Success:
        shares = self.outcomes.turn_shares(vectors)
        n = len(turns)
        weights = np.array(
            [2.0 ** (i - n + 1) * _informative(t) for i, t in enumerate(turns)], dtype=np.float64
        )
        call = weights @ shares / weights.sum()
        resolved = call[self.outcomes.names.index("resolved")]
        verdict = bool(resolved >= 0.5)
        column = self.outcomes.names.index("resolved" if verdict else "unresolved")
        telling = turns[int(np.argmax(weights * shares[:, column]))]
        said = telling if len(telling) <= 120 else telling[:117] + "..."
        reason = (
            f"the caller's words read as {'resolved' if verdict else 'not resolved'} "
            f'({resolved:.0%} resolved), most of all: "{said}"'
        )
        return Success(verdict, reason)


def _informative(turn: str) -> float:
    return SHORT_WEIGHT if len(turn.split()) <= SHORT_WORDS else 1.0
