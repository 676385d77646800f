"""Local intent classifier: nearest examples by sentence-embedding cosine similarity.

The agent's example utterances are embedded once, when the agent is loaded. Each turn embeds the
caller's text once (about 6 ms on one CPU thread) and scores only the intents the current state
allows: an intent's score is its best example's similarity, plus a little of its runner-up's, so
one lucky example does not outvote an intent whose examples agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from shared.knowledge.embedder import Embedder, Vectors

SECOND_BEST_WEIGHT = 0.15
# Just under the threshold, an intent still wins when it leads every other allowed intent by
# this much: what counts is that the caller's words point at one intent, not the raw similarity.
NEAR_THRESHOLD_BAND = 0.1
CLEAR_LEAD = 0.2


@dataclass(frozen=True)
class Scored:
    label: str
    score: float


def accepted(
    ranked: list[Scored], threshold: float, *, margin: float = 0.0, strict: bool = False
) -> Scored | None:
    """The best label if it clears ``threshold + margin``, or nearly does with a clear lead
    (not when ``strict``: the words also fit something else, such as a slot's value)."""
    if not ranked:
        return None
    best = ranked[0]
    runner_up = ranked[1].score if len(ranked) > 1 else 0.0
    needed = threshold + margin
    if best.score >= needed:
        return best
    if strict:
        return None
    if best.score >= needed - NEAR_THRESHOLD_BAND and best.score - runner_up >= CLEAR_LEAD:
        return best
    return None


class IntentClassifier:
    """Scores labels (``'state:intent'`` or ``'*:intent'``) against their example utterances."""

    def __init__(self, embedder: Embedder, examples: Mapping[str, list[str]]) -> None:
        self.embedder = embedder
        labels: list[str] = []
        texts: list[str] = []
        for label, utterances in examples.items():
            for utterance in utterances:
                labels.append(label)
                texts.append(utterance)
        self._matrix = embedder.embed(texts) if texts else np.zeros((0, 384), dtype=np.float32)
        self._rows: dict[str, np.ndarray] = {
            label: np.array([i for i, lab in enumerate(labels) if lab == label])
            for label in examples
        }

    @property
    def labels(self) -> list[str]:
        return list(self._rows)

    def embed(self, text: str) -> Vectors:
        return self.embedder.embed_one(text)

    def rank(self, vector: Vectors, allowed: Iterable[str]) -> list[Scored]:
        """Allowed labels best first; scores are cosine similarities in [-1, 1]."""
        allowed = [label for label in allowed if label in self._rows]
        if not allowed:
            return []
        similarities = self._matrix @ vector
        ranked = []
        for label in allowed:
            scores = np.sort(similarities[self._rows[label]])[::-1]
            score = float(scores[0])
            if len(scores) > 1:
                score = (1 - SECOND_BEST_WEIGHT) * score + SECOND_BEST_WEIGHT * float(scores[1])
            ranked.append(Scored(label, score))
        ranked.sort(key=lambda s: s.score, reverse=True)
        return ranked
