"""Intent accuracy on held-out paraphrases: ``parley agent eval``, the tests and the benchmark.

Each utterance is decided as a call would decide it in that state: the allowed intents ranked,
then the same acceptance rule as the engine (threshold, or just under it with a clear lead).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from media_nodes.dialogue.engine import CONFIDENT_INTENT_MARGIN
from media_nodes.dialogue.nlu.intents import accepted
from media_nodes.dialogue.runtime import AgentRuntime

BELOW_THRESHOLD = "(not understood)"


@dataclass(frozen=True)
class Decision:
    state: str
    expected: str
    text: str
    got: str  # an intent, or BELOW_THRESHOLD
    score: float
    top1: str  # the best-ranked intent, taken or not


@dataclass
class IntentAccuracy:
    decisions: list[Decision] = field(default_factory=list)
    confident_margin: float = CONFIDENT_INTENT_MARGIN
    threshold: float = 0.5

    @property
    def total(self) -> int:
        return len(self.decisions)

    @property
    def correct(self) -> int:
        return sum(d.got == d.expected for d in self.decisions)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def top1_accuracy(self) -> float:
        hits = sum(d.top1 == d.expected for d in self.decisions)
        return hits / self.total if self.total else 0.0

    @property
    def misses(self) -> list[Decision]:
        return [d for d in self.decisions if d.got != d.expected]

    @property
    def misroutes(self) -> list[Decision]:
        """Wrong intents the call would have followed."""
        return [d for d in self.misses if d.got != BELOW_THRESHOLD]

    @property
    def confident_misroutes(self) -> list[Decision]:
        """Misroutes scored so high that nothing (not even a knowledge answer) overrides them."""
        floor = self.threshold + self.confident_margin
        return [d for d in self.misroutes if d.score >= floor]

    def confusions(self) -> Counter[tuple[str, str]]:
        return Counter((d.expected, d.got) for d in self.misses)

    def report(self) -> str:
        lines = [
            f"accuracy {self.accuracy:.1%} ({self.correct}/{self.total}), "
            f"top-1 {self.top1_accuracy:.1%}, threshold {self.threshold:.2f}"
        ]
        confusions = self.confusions()
        if confusions:
            lines.append("confusions (expected -> got: count):")
            for (expected, got), count in confusions.most_common():
                lines.append(f"  {expected} -> {got}: {count}")
        confident = self.confident_misroutes
        lines.append(f"confident misroutes: {len(confident)}")
        for d in confident:
            lines.append(f"  [{d.state}] '{d.text}': {d.expected} -> {d.got} ({d.score:.2f})")
        if self.misses:
            lines.append("misses:")
            for d in self.misses:
                lines.append(
                    f"  [{d.state}] '{d.text}': expected {d.expected}, got {d.got} ({d.score:.2f})"
                )
        return "\n".join(lines)


def load_paraphrases(path: Path) -> dict[str, dict[str, list[str]]]:
    """state -> intent -> utterances; anything else is refused with the file's name."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    valid = isinstance(data, dict) and all(
        isinstance(intents, dict)
        and all(
            isinstance(texts, list) and all(isinstance(t, str) for t in texts)
            for texts in intents.values()
        )
        for intents in data.values()
    )
    if not valid:
        raise ValueError(f"{path}: expected state -> intent -> list of utterances")
    return data  # type: ignore[no-any-return]


async def intent_accuracy(
    runtime: AgentRuntime, paraphrases: dict[str, dict[str, list[str]]]
) -> IntentAccuracy:
    """How the agent's classifier decides every paraphrase in its state."""
    result = IntentAccuracy(threshold=runtime.threshold)
    for state, intents in paraphrases.items():
        if state not in runtime.definition.states:
            raise ValueError(f"unknown state '{state}' in the paraphrases")
        routes = runtime.routes(state)
        known = {name for name, _ in routes.values()}
        for intent, utterances in intents.items():
            if intent not in known:
                raise ValueError(f"intent '{intent}' is not allowed in state '{state}'")
            for text in utterances:
                vector = await asyncio.to_thread(runtime.classifier.embed, text)
                ranked = runtime.classifier.rank(vector, routes, text)
                chosen = accepted(ranked, runtime.threshold)
                top1 = routes[ranked[0].label][0] if ranked else ""
                got = routes[chosen.label][0] if chosen else BELOW_THRESHOLD
                score = ranked[0].score if ranked else 0.0
                result.decisions.append(Decision(state, intent, text, got, score, top1))
    return result
