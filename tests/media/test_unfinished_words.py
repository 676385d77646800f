"""Words that break off mid-clause hold the caller's turn: the rule on held-out transcripts, and
a call on the fakes where a caller stops to think after "...to my"."""

from __future__ import annotations

from pathlib import Path

import pytest

from media_nodes.asr.unfinished import reads_unfinished
from media_nodes.audio.end_of_turn import WaitPolicy, endpoint_wait_ms
from media_nodes.dialogue.protocol import UserTurn
from shared.events.models import TurnUser
from tests.media.fakes import FakeAsr, FakeCall, ScriptedDialogue, fake_call


@pytest.mark.parametrize(
    "text",
    [
        "Could you send the parcel to my",
        "I was hoping to get a refund for the",
        "My postcode is, uh",
        "It's about the invoice and",
        "I'd rather pick it up, if",
        "Can you check whether",
        "Well, I was going to...",
        "Put it under the name of",
        "So the thing is,",
        "I ordered two of them but\u2014",
        "  And then, um.  ",  # Whisper ends a fragment with a full stop too
    ],
)
def test_a_transcript_that_breaks_off_reads_unfinished(text: str) -> None:
    assert reads_unfinished(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Yes.",
        "Okay.",
        "That's everything, thanks.",
        "Can you hold on?",
        "I'd like a refund.",
        "Where is it?",
        "The one from Tuesday",
        "Anderson",  # "and" inside a word is not the word
        "It's the Toronto",  # nor "to"
        "No, that's not mine",
    ],
)
def test_a_transcript_that_could_end_does_not(text: str) -> None:
    assert not reads_unfinished(text)


def test_unfinished_words_lengthen_every_wait_and_never_shorten_one() -> None:
    policy = WaitPolicy(base_ms=400, complete_ms=300, incomplete_ms=900, cap_ms=1400)
    for probability in (None, 0.1, 0.9):
        for expectation in (None, "yes_no", "digits"):
            plain = endpoint_wait_ms(policy, probability, expectation)  # type: ignore[arg-type]
            held = endpoint_wait_ms(
                policy,
                probability,
                expectation,  # type: ignore[arg-type]
                words_unfinished=True,
            )
            assert held == max(plain, policy.incomplete_ms)
    assert endpoint_wait_ms(WaitPolicy(cap_ms=700), None, None, words_unfinished=True) == 700


REST = "on Friday afternoon please"


async def caller_stops_to_think(call: FakeCall, first: str, pause_ms: int) -> None:
    """The caller says ``first``, is silent ``pause_ms``, then goes on."""
    await call.agent_done()
    heard_before = len(call.asr.heard)
    await call.say(first, ms=500)
    await call.pause(200)  # past the speculative pause (160 ms): the transcript is under way
    await call.until(lambda: len(call.asr.heard) > heard_before)
    await call.pause(pause_ms - 200)
    await call.say(REST, ms=900)
    await call.pause()


@pytest.mark.parametrize(
    ("first", "caller_turns"),
    [
        ("Could you bring it round to my", 1),  # unfinished: the wait holds past 650 ms
        ("Could you bring it round.", 2),  # reads finished: 650 ms is past the 400 ms wait
    ],
)
async def test_a_caller_who_stops_mid_clause_is_not_answered_yet(
    tmp_path: Path, first: str, caller_turns: int
) -> None:
    dialogue = ScriptedDialogue("Hi.")
    async with fake_call(tmp_path, dialogue) as call:
        await caller_stops_to_think(call, first, pause_ms=650)
        await call.until(lambda: len(dialogue.inputs) == caller_turns)
        await call.agent_done(timeout_s=5)
    said = call.payloads(TurnUser)
    assert len(said) == caller_turns, [t.text for t in said]
    assert len(dialogue.inputs) == caller_turns
    # Nothing the caller said is lost: the rest is heard (the fake hears a turn's longest tone).
    assert said[-1].text == REST
    assert dialogue.inputs[-1] == UserTurn(REST)


@pytest.mark.parametrize(
    ("first", "caller_turns"),
    [("Could you bring it round to my", 1), ("Could you bring it round.", 2)],
)
async def test_a_transcript_slower_than_the_wait_still_decides_it(
    tmp_path: Path, first: str, caller_turns: int
) -> None:
    """On a busy node the pause's transcript comes after the ordinary wait is over: the turn
    holds for it (the reply needs those words anyway), then its words decide."""
    dialogue = ScriptedDialogue("Hi.")
    async with fake_call(tmp_path, dialogue, asr=FakeAsr(delay_s=0.3)) as call:
        await call.agent_done()
        await call.say(first, ms=500)
        await call.pause(650)  # fed at once: the transcript is still 0.3 s away
        assert len(dialogue.inputs) == 0  # no turn ended before its words were in
        await call.until(lambda: len(call.asr.heard) == 1)
        await call.say(REST, ms=900)
        await call.pause()
        await call.until(lambda: len(dialogue.inputs) == caller_turns)
        await call.agent_done(timeout_s=5)
    said = call.payloads(TurnUser)
    assert [t.text for t in said][-1] == REST
    assert len(said) == caller_turns, [t.text for t in said]


async def test_a_caller_who_stopped_is_answered_when_the_slow_transcript_comes(
    tmp_path: Path,
) -> None:
    dialogue = ScriptedDialogue("Hi.")
    async with fake_call(tmp_path, dialogue, asr=FakeAsr(delay_s=0.3)) as call:
        await call.agent_done()
        await call.say("Could you bring it round.", ms=500)
        await call.pause(600)  # past the ordinary wait, short of the cap: no more audio
        await call.until(lambda: len(dialogue.inputs) == 1)
    assert dialogue.inputs == [UserTurn("Could you bring it round.")]
