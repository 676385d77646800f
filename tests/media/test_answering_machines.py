"""Answering machines and screening assistants on live calls through a real media node: the
simulated Twilio caller plays Piper-spoken greetings and a synthetic beep (or a person, or
silence) into an outbound call, and the node's own detectors decide. Checked on what the caller
side heard and when (the voicemail message only after the beep), and on the call's events."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from media_nodes.simulator.caller import CallResult, Say, call
from shared.events.models import CallEnded, DispositionSet, Event, TurnAgent, TurnUser
from tests.media.conftest import PATIENT, ROOT, NodeFactory, RunningNode, clip, words
from tests.media.test_voicemail_detection import silence, tone
from tests.media.test_voicemail_detection import spoken as spoken_in_a_loop

GREETING = (
    "Hi, you've reached Sam. I can't come to the phone right now. "
    "Please leave a message after the tone."
)
# Long, unbroken and with no voicemail phrase: only the long-greeting rule and the beep catch it.
PLAIN_GREETING = (
    "Hello and welcome, this is the Miller family, we are so glad that you thought of us today "
    "and we will be sure to get back to you just as soon as we possibly can"
)
MESSAGE = "Hi, this is Acme Shop about your order. Please call us back. Goodbye."
OUTBOUND = {"direction": "outbound"}


def spoken(text: str) -> npt.NDArray[np.int16]:
    """Piper's voice at 8 kHz (synthesized on a thread: the test's own loop is running)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(spoken_in_a_loop, text).result()


def agent_dir(tmp_path: Path, extra: str) -> Path:
    """The example agent acme-shop with ``extra`` YAML appended (its voicemail setting)."""
    agents = tmp_path / "agents"
    shutil.copytree(ROOT / "examples" / "agents" / "acme-shop", agents / "acme-shop")
    with (agents / "acme-shop" / "agent.yaml").open("a") as f:
        f.write("\n" + extra)
    return agents


LEAVE_MESSAGE = f"voicemail:\n  action: leave_message\n  message: {MESSAGE}\n"


def machine(text: str, *, beep: bool = True) -> list[Say]:
    """A machine's greeting from the moment the call is answered, then its beep, then the
    quiet of a recording."""
    steps = [Say(np.concatenate([silence(300), spoken(text)]), label="greeting", at_once=True)]
    if beep:
        steps.append(
            Say(np.concatenate([silence(400), tone(1000, 500)]), label="beep", at_once=True)
        )
    return [*steps, Say(silence(6000), label="recording", at_once=True)]


def outcome(events: list[Event]) -> tuple[str, str]:
    (disposition,) = [e.payload for e in events if isinstance(e.payload, DispositionSet)]
    (ended,) = [e.payload for e in events if isinstance(e.payload, CallEnded)]
    return disposition.disposition, ended.reason


def agent_texts(events: list[Event]) -> list[str]:
    return [e.payload.text for e in events if isinstance(e.payload, TurnAgent)]


async def placed(
    running: RunningNode, steps: list[Say], **options: object
) -> tuple[CallResult, list[Event]]:
    options = {**PATIENT, "turn_timeout_s": 12.0, **options}
    result = await call(running.url, steps, parameters=OUTBOUND, **options)
    return result, await running.wait_call_ended(result.call_sid)


@pytest.mark.integration
async def test_a_voicemail_greeting_gets_the_message_after_the_beep(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    async with start_node(agents_dir=agent_dir(tmp_path, LEAVE_MESSAGE)) as running:
        result, events = await placed(running, machine(GREETING))
    beep = next(t for t in result.turns if t.label == "beep")
    assert beep.speech_start_at is not None and beep.speech_end_at is not None
    assert outcome(events) == ("voicemail", "answering_machine")
    assert result.closed_by_agent
    assert agent_texts(events)[-1] == MESSAGE
    # Nothing of the agent is heard while the beep sounds; the message starts right after it
    # (the machine records from the beep) and is heard whole.
    during = [t for t in result.agent_voiced_at if beep.speech_start_at <= t <= beep.speech_end_at]
    after = [t for t in result.agent_voiced_at if t > beep.speech_end_at]
    assert during == [], result.to_dict()
    assert after and after[0] - beep.speech_end_at < 1.5, result.to_dict()
    assert len(after) * 0.02 > 2.5  # seconds of voiced message audio


@pytest.mark.integration
async def test_a_greeting_with_no_phrase_is_told_by_its_length_and_the_beep(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    async with start_node(agents_dir=agent_dir(tmp_path, LEAVE_MESSAGE)) as running:
        result, events = await placed(running, machine(PLAIN_GREETING))
    beep = next(t for t in result.turns if t.label == "beep")
    assert beep.speech_end_at is not None
    assert outcome(events) == ("voicemail", "answering_machine")
    assert agent_texts(events)[-1] == MESSAGE
    assert [t for t in result.agent_voiced_at if t > beep.speech_end_at]
    assert min(t for t in result.agent_voiced_at if t > beep.speech_end_at) > beep.speech_end_at


@pytest.mark.integration
async def test_hang_up_on_a_voicemail_when_the_agent_leaves_no_message(
    start_node: NodeFactory,
) -> None:
    async with start_node() as running:  # acme-shop's voicemail setting: the default, hang up
        result, events = await placed(running, machine(GREETING))
    assert outcome(events) == ("voicemail", "answering_machine")
    assert result.closed_by_agent
    beep = next((t for t in result.turns if t.label == "beep"), None)
    # It hangs up on the evidence, without waiting for the beep.
    assert (
        beep is None
        or beep.speech_end_at is None
        or not [t for t in result.agent_voiced_at if t > beep.speech_end_at]
    )
    assert MESSAGE not in agent_texts(events)


@pytest.mark.integration
async def test_a_person_answering_is_no_voicemail(start_node: NodeFactory, tmp_path: Path) -> None:
    hello = Say(np.concatenate([silence(400), spoken("Hello?")]), label="hello", at_once=True)
    async with start_node(agents_dir=agent_dir(tmp_path, LEAVE_MESSAGE)) as running:
        _result, events = await placed(running, [hello, clip("goodbye")])
    disposition, reason = outcome(events)
    assert disposition != "voicemail" and reason != "answering_machine"
    assert MESSAGE not in agent_texts(events)
    assert any({"goodbye"} <= words(t) for t in agent_texts(events)), agent_texts(events)


@pytest.mark.integration
async def test_a_person_who_says_a_long_sentence_is_no_voicemail(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    """Over five seconds of unbroken speech, but after the person's own "Hello?": the long
    greeting rule measures only the first utterance."""
    long_sentence = spoken(
        "Yes hello, this is Maria speaking, I was just on my way out of the door to pick up "
        "the kids from school, but I have got a minute now, so go ahead and tell me about it"
    )
    assert len(long_sentence) / 8000 > 5.0
    steps = [
        Say(np.concatenate([silence(400), spoken("Hello?")]), label="hello", at_once=True),
        Say(long_sentence, label="long"),
    ]
    async with start_node(agents_dir=agent_dir(tmp_path, LEAVE_MESSAGE)) as running:
        _result, events = await placed(running, steps)
    disposition, reason = outcome(events)
    assert disposition != "voicemail" and reason != "answering_machine", agent_texts(events)
    assert MESSAGE not in agent_texts(events)
    caller = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    (long_turn,) = [t for t in caller if {"maria", "kids", "school"} & words(t.text)]
    # The dialogue answered it, as it answers a person.
    agent = [e.payload for e in events if isinstance(e.payload, TurnAgent)]
    assert any(t.turn_index == long_turn.turn_index for t in agent), (caller, agent)


@pytest.mark.integration
async def test_silence_is_no_voicemail(start_node: NodeFactory, tmp_path: Path) -> None:
    async with start_node(agents_dir=agent_dir(tmp_path, LEAVE_MESSAGE)) as running:
        _result, events = await placed(running, [Say(silence(7000), label="quiet", at_once=True)])
    disposition, reason = outcome(events)
    assert disposition != "voicemail" and reason != "answering_machine"
    assert MESSAGE not in agent_texts(events)


@pytest.mark.integration
async def test_a_screening_assistant_is_told_who_is_calling(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    screening = (
        "Hi, the person you are calling is using a screening service. "
        "Please say your name and why you are calling."
    )
    steps = [
        Say(np.concatenate([silence(300), spoken(screening)]), label="screening", at_once=True),
        clip("goodbye"),
    ]
    announce = "screening:\n  message: This is Acme Shop about your order.\n"
    async with start_node(agents_dir=agent_dir(tmp_path, announce)) as running:
        _result, events = await placed(running, steps)
    texts = agent_texts(events)
    assert "This is Acme Shop about your order." in texts, texts
    disposition, _ = outcome(events)
    assert disposition != "voicemail"
    # After the announcement the call goes on: the person's "goodbye" is heard as their turn
    # (whether the agent's answer to it is in before the simulated person hangs up depends on
    # the machine's load).
    said = [e.payload.text for e in events if isinstance(e.payload, TurnUser)]
    assert any("goodbye" in words(t) for t in said), said


@pytest.mark.integration
async def test_a_screening_assistant_is_hung_up_on_when_the_agent_says_so(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    screening = (
        "Hi there, this call is being screened by Google Assistant. "
        "Go ahead and say your name and why you're calling."
    )
    steps = [
        Say(np.concatenate([silence(300), spoken(screening)]), label="screening", at_once=True),
        Say(silence(6000), label="waiting", at_once=True),
    ]
    hang_up = "screening:\n  action: hang_up\n"
    async with start_node(agents_dir=agent_dir(tmp_path, hang_up)) as running:
        _result, events = await placed(running, steps)
    disposition, reason = outcome(events)
    said = [e.payload.text for e in events if isinstance(e.payload, TurnUser)]
    assert (disposition, reason) == ("screened", "answering_machine"), (said, agent_texts(events))
    texts = agent_texts(events)
    assert not any("automated call" in t for t in texts), texts  # it did not announce itself
