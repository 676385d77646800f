"""Local intent classifier: nearest examples by sentence-embedding similarity, sharpened.

Common idioms ("call off my visit", "rebook", "put me through") are first rewritten to their
plain verb, in the caller's words and the examples alike. The agent's example utterances are
embedded once, when the agent is loaded. Each turn embeds the
caller's text once (about 6 ms on one CPU thread) and scores only the intents the current state
allows: an intent's score is its best example's similarity, plus a little of its runner-up's, so
one lucky example does not outvote an intent whose examples agree. Two contrasts between the
allowed intents sharpen it: a softmax model trained on their examples (which directions of the
embedding tell them apart), and words that only some of them use, ignoring negated words
("I don't want to reschedule, just cancel").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from shared.knowledge.embedder import Embedder, Vectors

SECOND_BEST_WEIGHT = 0.15
# Words that only some of the allowed intents use in their examples ("cancel", "move", "charge")
# tell them apart where the small embedding model blurs them: each such word adds a little,
# more the fewer intents share it. Capped, so words never outvote meaning.
DISTINCT_WORD_WEIGHT = 0.08
DISTINCT_WORD_CAP = 0.12
STOPWORDS = frozenset(
    """a an the i i'm im me my mine we our us you your yours it its it's this that these those
    is are was were be been am do does did doing have has had having can could would should will
    shall may might must to of in on at for from by with about as into than then so and or but
    if not no yes yeah please thanks thank hi hello hey um uh oh well just really also too very
    want wanted like would need needs get got go going some any there here what when where which
    who how why all one now know ok okay sure let""".split()
)
# A softmax model per set of intents a state allows, trained on their examples, learns which
# directions of the embedding separate them (book / reschedule / cancel share most words).
# Its probability shifts each score by up to this weight; 0.4 was chosen on acme-shop's
# development paraphrases and a set of nonsense utterances (none may be accepted).
CONTRASTIVE_WEIGHT = 0.4
CONTRASTIVE_STEPS = 400
CONTRASTIVE_RATE = 2.0
CONTRASTIVE_L2 = 0.001
# The softmax picks among the allowed intents even for words that fit none ("um, I'm not sure"):
# it counts fully only when the utterance is near some intent's examples at all.
IN_SCOPE_FLOOR = 0.25
IN_SCOPE_SPAN = 0.25
NEGATION = re.compile(
    r"\b(?:don'?t|do not|doesn'?t|not|no longer|never|without|rather than|instead of)\s+"
    r"(?:want to |need to |wanna |going to |gonna |to )?(\w+)"
)
# Just under the threshold, an intent still wins when it leads every other allowed intent by
# this much: what counts is that the caller's words point at one intent, not the raw similarity.
NEAR_THRESHOLD_BAND = 0.1
CLEAR_LEAD = 0.2


# Idioms for the requests every phone agent hears, rewritten to the plain verb before the
# utterance (and every example) is embedded and its words counted: the small embedding model
# puts "call off my visit" next to "book a visit", and no agent author lists every idiom.
# Only phrases with one reading on a phone line are rewritten ("drop off" and "moving away"
# are left alone).
_OBJECT = r"(?:(?:it|that|this|them|me|us|my|our|his|her|their|the)\b[\w' -]{0,30}?)"
PARAPHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), replacement)
    for pattern, replacement in (
        # cancel
        (r"\bcall(?:ing|ed|s)? off\b", "cancel"),
        (rf"\bcall(?:ing|ed|s)? ({_OBJECT}) off\b", r"cancel \1"),
        (
            r"\b(?:scrap|scratch|drop|withdraw|ditch)(?:p?ed|p?ing|s|es)?\b"
            r"(?! off| by| in\b)",
            "cancel",
        ),
        (r"\bget(?:ting)? rid of\b", "cancel"),
        (r"\b(?:take|cross|strike)s? (me|us|him|her|them) off\b", r"cancel \1 from"),
        (r"\bremove (me|us|him|her|them) from\b", r"cancel \1 from"),
        # a new booking, not a move of the old one
        (r"\breserv(?:e|ed|es|ing)\b", "book"),
        (
            r"\b(?:make|book|get|set up|schedule) (?:another|a second|one more|an extra) "
            r"(appointment|visit|booking|cleaning|checkup|check-up)\b",
            r"book a new \1",
        ),
        # reschedule
        (r"\bre-?(?:book|arrange|schedule)(?:ed|ing|s)?\b", "reschedule"),
        (rf"\bpush(?:ed|ing|es)? ({_OBJECT})?back\b", r"postpone \1"),
        (r"\bpush(?:ed|ing|es)? (it|that|this|them) (?=to\b)", r"move \1 "),
        (rf"\bbring(?:ing|s)? ({_OBJECT})?forward\b", r"move \1earlier"),
        (r"\b(?:switch|swap)(?:ed|ing|es)?\b", "change"),
        # a person
        (r"\bput(?:ting)? (me|us) through\b", r"connect \1"),
        (r"\btransfer(?:red|ring|s)? (me|us)\b", r"connect \1"),
        # nothing else
        (r"\b(?:that|this) (?:covers|cover|covered) (?:it|everything)\b", "that's all"),
        (r"\bthat(?:'ll| will) be (?:all|it)\b", "that's all"),
        (r"\bcheck[ -]up\b", "checkup"),
    )
)


def canonical(text: str) -> str:
    """``text`` with the common idioms of ``PARAPHRASES`` rewritten to their plain verb."""
    text = text.replace("\u2019", "'")
    for pattern, replacement in PARAPHRASES:
        text = pattern.sub(replacement, text)
    return re.sub(r"\s{2,}", " ", text)


@dataclass(frozen=True)
class Scored:
    label: str
    score: float
    similarity: float = 0.0  # the nearest examples' part alone, before the contrasts


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
    if best.score >= needed and not strict:
        return best
    if strict:
        # Only plain similarity may override words that are also a value for the step.
        return best if max(best.similarity, 0.0) >= needed else None
    if best.score >= needed - NEAR_THRESHOLD_BAND and best.score - runner_up >= CLEAR_LEAD:
        return best
    return None


def stem(word: str) -> str:
    """A crude English stem, enough to match "cancelled"/"cancel", "moving"/"move"."""
    word = word.lower().strip("'")
    word = re.sub(r"'s$", "", word)
    for suffix, minimum in (("ing", 5), ("ed", 4), ("es", 4), ("s", 3)):
        if word.endswith(suffix) and len(word) > minimum:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2]:
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def content_words(text: str) -> set[str]:
    """Stems of the words that carry meaning; a negated word ("don't want to reschedule")
    does not count for the intent it names."""
    lowered = canonical(text).lower()
    negated = {stem(m.group(1)) for m in NEGATION.finditer(lowered)}
    tokens = re.findall(r"[a-z']+", lowered)
    return {stem(t) for t in tokens if t not in STOPWORDS and len(t) > 1} - negated


@dataclass(frozen=True)
class _Contrast:
    """Softmax regression over one set of labels: weights, bias, label order."""

    weights: np.ndarray
    bias: np.ndarray
    labels: tuple[str, ...]

    def probabilities(self, vector: Vectors) -> dict[str, float]:
        logits = vector @ self.weights + self.bias
        logits = logits - logits.max()
        exp = np.exp(logits)
        exp /= exp.sum()
        return {label: float(p) for label, p in zip(self.labels, exp, strict=True)}


def _train_contrast(
    features: np.ndarray, targets: np.ndarray, labels: tuple[str, ...]
) -> _Contrast:
    count = len(labels)
    weights = np.zeros((features.shape[1], count), dtype=np.float64)
    bias = np.zeros(count, dtype=np.float64)
    onehot = np.eye(count)[targets]
    for _ in range(CONTRASTIVE_STEPS):
        logits = features @ weights + bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        gradient = (probs - onehot) / len(features)
        weights -= CONTRASTIVE_RATE * (features.T @ gradient + CONTRASTIVE_L2 * weights)
        bias -= CONTRASTIVE_RATE * gradient.sum(axis=0)
    return _Contrast(weights, bias, labels)


class IntentClassifier:
    """Scores labels (``'state:intent'`` or ``'*:intent'``) against their example utterances."""

    def __init__(self, embedder: Embedder, examples: Mapping[str, list[str]]) -> None:
        self.embedder = embedder
        self._vocabulary: dict[str, set[str]] = {
            label: set().union(*(content_words(u) for u in utterances)) if utterances else set()
            for label, utterances in examples.items()
        }
        labels: list[str] = []
        texts: list[str] = []
        for label, utterances in examples.items():
            for utterance in utterances:
                labels.append(label)
                texts.append(canonical(utterance))
        self._matrix = embedder.embed(texts) if texts else np.zeros((0, 384), dtype=np.float32)
        self._rows: dict[str, np.ndarray] = {
            label: np.array([i for i, lab in enumerate(labels) if lab == label])
            for label in examples
        }
        self._contrasts: dict[frozenset[str], _Contrast] = {}

    def prepare(self, allowed: Iterable[str]) -> None:
        """Train the contrastive model of one set of labels (a state's), ahead of calls."""
        self._contrast([label for label in allowed if label in self._rows])

    def _contrast(self, allowed: list[str]) -> _Contrast | None:
        if len(allowed) < 2:
            return None
        key = frozenset(allowed)
        cached = self._contrasts.get(key)
        if cached is None:
            ordered = tuple(sorted(allowed))
            rows = [
                (index, row) for index, label in enumerate(ordered) for row in self._rows[label]
            ]
            features = self._matrix[[row for _, row in rows]].astype(np.float64)
            targets = np.array([index for index, _ in rows])
            cached = self._contrasts[key] = _train_contrast(features, targets, ordered)
        return cached

    @property
    def labels(self) -> list[str]:
        return list(self._rows)

    def embed(self, text: str) -> Vectors:
        return self.embedder.embed_one(canonical(text))

    def rank(
        self, vector: Vectors, allowed: Iterable[str], text: str = "", *, contrastive: bool = True
    ) -> list[Scored]:
        """Allowed labels best first: cosine similarity of the nearest examples, plus a little
        for words of ``text`` that only some of the allowed intents use.

        ``contrastive=False`` leaves out the softmax model: for a few global intents checked
        on their own (is this a value, or a request for a person?) it would crown one of them
        whatever was said."""
        allowed = [label for label in allowed if label in self._rows]
        if not allowed:
            return []
        similarities = self._matrix @ vector
        distinct = self._distinct_words(text, allowed) if text else {}
        contrast = self._contrast(allowed) if contrastive else None
        probabilities = contrast.probabilities(vector) if contrast else {}
        baseline = 1 / len(allowed)
        nearest: dict[str, float] = {}
        for label in allowed:
            scores = np.sort(similarities[self._rows[label]])[::-1]
            score = float(scores[0])
            if len(scores) > 1:
                score = (1 - SECOND_BEST_WEIGHT) * score + SECOND_BEST_WEIGHT * float(scores[1])
            nearest[label] = score
        in_scope = min(1.0, max(0.0, (max(nearest.values()) - IN_SCOPE_FLOOR) / IN_SCOPE_SPAN))
        ranked = []
        for label, similarity in nearest.items():
            score = similarity
            score += min(DISTINCT_WORD_CAP, DISTINCT_WORD_WEIGHT * distinct.get(label, 0.0))
            if probabilities:
                score += in_scope * CONTRASTIVE_WEIGHT * (probabilities[label] - baseline)
            ranked.append(Scored(label, score, similarity))
        ranked.sort(key=lambda s: s.score, reverse=True)
        return ranked

    def _distinct_words(self, text: str, allowed: list[str]) -> dict[str, float]:
        """label -> sum over the caller's words used by it of 1 / (allowed labels using them);
        words every allowed label uses say nothing."""
        words = content_words(text)
        weights: dict[str, float] = {}
        for word in words:
            users = [label for label in allowed if word in self._vocabulary[label]]
            if not users or len(users) == len(allowed):
                continue
            for label in users:
                weights[label] = weights.get(label, 0.0) + 1 / len(users)
        return weights
