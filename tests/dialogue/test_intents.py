"""The classifier on paraphrases written apart from the agents' examples, and on nonsense."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from media_nodes.dialogue.cli import app
from media_nodes.dialogue.evaluation import intent_accuracy, load_paraphrases
from media_nodes.dialogue.nlu.intents import accepted, canonical, content_words
from media_nodes.dialogue.runtime import AgentRuntime

from .conftest import DENTAL_AGENT, EXAMPLE_AGENT

NONSENSE = [
    "purple monkey dishwasher",
    "the weather on mars is cold",
    "my dog is called rex",
    "I like turtles",
    "what's the capital of France",
    "um, I'm not sure",
    "it's one two",
    "eleven",
]


async def test_development_paraphrase_accuracy(acme_runtime: AgentRuntime) -> None:
    paraphrases = load_paraphrases(EXAMPLE_AGENT / "tests" / "paraphrases.yaml")
    result = await intent_accuracy(acme_runtime, paraphrases)
    assert result.total >= 40
    assert result.accuracy >= 0.95, result.report()


async def test_held_out_accuracy_of_acme_shop(acme_runtime: AgentRuntime) -> None:
    result = await intent_accuracy(
        acme_runtime, load_paraphrases(EXAMPLE_AGENT / "eval" / "held_out.yaml")
    )
    assert result.total >= 40
    assert result.accuracy >= 0.9, result.report()
    assert not result.confident_misroutes, result.report()


@pytest.mark.parametrize("held_out", ["held_out.yaml", "held_out_2.yaml"])
async def test_held_out_accuracy_of_the_dental_agent(
    held_out: str, dental_runtime: AgentRuntime
) -> None:
    result = await intent_accuracy(
        dental_runtime, load_paraphrases(DENTAL_AGENT / "eval" / held_out)
    )
    assert result.total >= 50
    assert result.accuracy >= 0.9, result.report()
    assert len(result.confident_misroutes) <= 1, result.report()


@pytest.mark.parametrize("runtime_name", ["acme_runtime", "dental_runtime"])
@pytest.mark.parametrize("text", NONSENSE)
def test_nonsense_is_no_intent(
    runtime_name: str, text: str, request: pytest.FixtureRequest
) -> None:
    runtime: AgentRuntime = request.getfixturevalue(runtime_name)
    for routes in (runtime.routes("main_menu"), runtime.global_routes()):
        ranked = runtime.classifier.rank(runtime.classifier.embed(text), routes, text)
        assert accepted(ranked, runtime.threshold) is None, ranked[:2]


def test_negated_words_do_not_count_for_their_intent() -> None:
    words = content_words("I'm not going to make it and I don't want to reschedule, just cancel")
    assert "cancel" in words and "reschedul" not in words


@pytest.mark.parametrize(
    ("said", "plain"),
    [
        ("I need to call off my appointment", "I need to cancel my appointment"),
        ("can you call it off", "can you cancel it"),
        ("please scrap the booking", "please cancel the booking"),
        ("take us off the list", "cancel us from the list"),
        ("I'd like to rebook", "I'd like to reschedule"),
        ("could we push my visit back a day", "could we postpone my visit a day"),
        ("bring it forward", "move it earlier"),
        ("put me through to billing", "connect me to billing"),
        ("I think that covers it", "I think that's all"),
        ("book another appointment for my son", "book a new appointment for my son"),
    ],
)
def test_idioms_become_their_plain_verb(said: str, plain: str) -> None:
    assert canonical(said) == plain


@pytest.mark.parametrize(
    "text",
    ["I'll drop off the form", "I'm moving away", "I'll drop by", "don't forget to text me"],
)
def test_words_with_another_reading_are_kept(text: str) -> None:
    assert canonical(text) == text


def test_a_negated_idiom_does_not_count_for_its_intent() -> None:
    assert "reschedul" not in content_words("cancel it and don't rebook")


async def test_only_allowed_intents_are_ranked(acme_runtime: AgentRuntime) -> None:
    classifier = acme_runtime.classifier
    vector = classifier.embed("no that's all thanks")
    in_menu = {s.label for s in classifier.rank(vector, acme_runtime.routes("main_menu"))}
    assert "anything_else:no_more" not in in_menu
    assert (
        classifier.rank(vector, acme_runtime.routes("anything_else"))[0].label
        == "anything_else:no_more"
    )


def test_cli_eval_prints_accuracy_confusions_and_misroutes(tmp_path: Path) -> None:
    runner = CliRunner()
    held_out = DENTAL_AGENT / "eval" / "held_out.yaml"
    result = runner.invoke(app, ["eval", str(DENTAL_AGENT), "--paraphrases", str(held_out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("accuracy ")
    assert "confusions (expected -> got: count):" in result.output
    assert "confident misroutes:" in result.output
    strict = runner.invoke(
        app,
        ["eval", str(DENTAL_AGENT), "--paraphrases", str(held_out), "--min-accuracy", "0.99"],
    )
    assert strict.exit_code == 1
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("main_menu:\n  fly_to_the_moon: [take me to the moon]\n")
    refused = runner.invoke(app, ["eval", str(DENTAL_AGENT), "--paraphrases", str(wrong)])
    assert refused.exit_code == 2
    assert "not allowed in state 'main_menu'" in refused.output
