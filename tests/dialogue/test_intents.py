"""The local classifier on held-out paraphrases of the example agent (target: >= 90 %)."""

from __future__ import annotations

from media_nodes.dialogue.evaluation import intent_accuracy, load_paraphrases
from media_nodes.dialogue.runtime import AgentRuntime

from .conftest import EXAMPLE_AGENT


async def test_held_out_paraphrase_accuracy(acme_runtime: AgentRuntime) -> None:
    paraphrases = load_paraphrases(EXAMPLE_AGENT / "tests" / "paraphrases.yaml")
    result = await intent_accuracy(acme_runtime, paraphrases)
    assert result.total >= 40
    assert result.accuracy >= 0.9, "\n".join(map(str, result.misses))


async def test_only_allowed_intents_are_ranked(acme_runtime: AgentRuntime) -> None:
    classifier = acme_runtime.classifier
    vector = classifier.embed("no that's all thanks")
    in_menu = {s.label for s in classifier.rank(vector, acme_runtime.routes("main_menu"))}
    assert "anything_else:no_more" not in in_menu
    assert (
        classifier.rank(vector, acme_runtime.routes("anything_else"))[0].label
        == "anything_else:no_more"
    )
