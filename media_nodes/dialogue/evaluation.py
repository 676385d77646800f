"""Intent accuracy of the local classifier on held-out paraphrases (tests and the benchmark)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from media_nodes.dialogue.runtime import AgentRuntime


@dataclass
class IntentAccuracy:
    total: int = 0
    correct: int = 0
    misses: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def load_paraphrases(path: Path) -> dict[str, dict[str, list[str]]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected state -> intent -> utterances")
    return data


async def intent_accuracy(
    runtime: AgentRuntime, paraphrases: dict[str, dict[str, list[str]]]
) -> IntentAccuracy:
    """Top-1 intent among the state's allowed intents, ignoring the confidence threshold."""
    result = IntentAccuracy()
    for state, intents in paraphrases.items():
        routes = runtime.routes(state)
        for intent, utterances in intents.items():
            for text in utterances:
                vector = await asyncio.to_thread(runtime.classifier.embed, text)
                ranked = runtime.classifier.rank(vector, routes)
                guess = routes[ranked[0].label][0] if ranked else ""
                accepted = bool(ranked) and ranked[0].score >= runtime.threshold
                result.total += 1
                if guess == intent and accepted:
                    result.correct += 1
                else:
                    shown = guess if accepted else f"{guess} (below threshold)"
                    result.misses.append((state, intent, text, shown))
    return result
