"""The call logic on fake engines and a fake line: barge-in, hold and backchannels, DTMF, what
the caller heard. No model, no socket: each test takes a fraction of a second. The same behaviour
with real models over a real socket is in test_calls.py and test_barge_in_counts.py."""

from __future__ import annotations

import asyncio
import io
import math
import wave
from pathlib import Path

import numpy as np
import pytest

from media_nodes.dialogue.protocol import DtmfInput, UserTurn
from shared.events.models import EscalationRequested, IntentDetected, TurnAgent, TurnUser
from tests.media.fakes import (
    FakeCall,
    FakeTts,
    Reply,
    ScriptedDialogue,
    fake_call,
)

GREETING = "Hi."
ORDER = "where is my order"
LONG_REPLY = (
    "Your order left our warehouse this morning. It is on its way with the courier and it "
    "should reach you on Friday, before noon, at the address you gave us."
)


def agent_turn(call: FakeCall, index: int) -> TurnAgent:
    turns = [t for t in call.payloads(TurnAgent) if t.turn_index == index]
    assert len(turns) == 1, call.payloads(TurnAgent)
    return turns[0]


def sent_frames(call: FakeCall, turn: int) -> int:
    """Frames of agent turn ``turn`` sent and marked so far (a mark names its turn: ``t<i>-``)."""
    return sum(p.frames for p in call.line.pieces() if p.mark.startswith(f"t{turn}-"))


def order_dialogue(reply: str = LONG_REPLY) -> ScriptedDialogue:
    return ScriptedDialogue(GREETING, replies={ORDER: Reply(reply)})


async def ask_for_order(call: FakeCall) -> None:
    """The caller asks, once the greeting is over; returns when the answer starts playing."""
    await call.agent_done()
    since = len(call.line.sent)
    await call.say(ORDER)
    await call.pause()
    await call.agent_speaks(since)


@pytest.mark.parametrize("rate", [8000, 16000])  # Twilio's phone line, WebRTC's wideband
async def test_a_barge_in_stops_the_agent_and_keeps_the_callers_words(
    tmp_path: Path, rate: int
) -> None:
    tts = FakeTts(ms_per_char=20, rate=rate)  # the reply lasts seconds: the caller cuts it off
    dialogue = order_dialogue()
    async with fake_call(tmp_path, dialogue, tts=tts, rate=rate) as call:
        await ask_for_order(call)
        await call.say("stop I want a person", ms=1000)  # longer than any backchannel
        await call.pause()
        await call.until(lambda: len(call.payloads(TurnUser)) == 2)
        await call.until(lambda: call.line.media_after(call.line.clears()[0].at))  # the answer
        barge_ins = call.counted("parley_barge_ins_total")
        false_ones = call.counted("parley_false_barge_ins_total")

    assert [t.text for t in call.payloads(TurnUser)] == [ORDER, "stop I want a person"]
    cut = agent_turn(call, 1)
    assert cut.interrupted and cut.planned_text is not None
    assert LONG_REPLY.startswith(cut.planned_text.split(" ")[0])
    assert len(cut.text) < len(cut.planned_text) and cut.planned_text.startswith(cut.text)
    assert dialogue.interruptions == [cut.text]
    assert dialogue.inputs[-1] == UserTurn("stop I want a person")
    # The clear went out at the hold, and the cut reply never played again after it.
    clears = call.line.clears()
    assert len(clears) == 1
    after = [p for p in call.line.pieces() if p.first_at > clears[0].at]
    assert after and all(p.mark.startswith("t2-") or not p.mark for p in after), after
    assert not any(p.mark.startswith("t1-") for p in after)
    assert (barge_ins, false_ones) == (1, 0)


async def test_a_backchannel_holds_the_agent_then_it_goes_on(tmp_path: Path) -> None:
    tts = FakeTts(ms_per_char=3)
    async with fake_call(tmp_path, order_dialogue(), tts=tts) as call:
        await ask_for_order(call)
        await asyncio.sleep(0.05)
        await call.say("uh-huh", ms=300)  # holds the agent, too short to barge in
        await call.pause()
        await call.until(lambda: call.counted("parley_backchannels_total") == 1)
        await call.agent_done(timeout_s=5)
        barge_ins = call.counted("parley_barge_ins_total")
        caller_turns_during_call = list(call.payloads(TurnUser))

    reply = agent_turn(call, 1)
    assert not reply.interrupted and reply.text.split() == LONG_REPLY.split(), reply
    assert barge_ins == 0
    assert len(call.line.clears()) == 1, "the hold cleared the line once"
    # Through the hold and the replay, every piece of the reply was heard whole: the pieces the
    # call counts as played (their marks came back) hold all of its audio.
    reply_pieces = [text for text in tts.spoken if text in LONG_REPLY]
    assert " ".join(reply_pieces).split() == LONG_REPLY.split()
    expected = sum(math.ceil(tts.samples_for(p) / call.line.frame) for p in reply_pieces)
    played = [p for p in call.line.pieces() if p.mark in call.line.accepted_marks]
    played_reply = [p for p in played if p.mark.startswith("t1-")]
    assert sum(p.frames for p in played_reply) == expected
    assert all(p.heard_frames == p.frames for p in played_reply)
    # The backchannel is not a turn, but its words are kept: with the call's end, nothing later
    # took them in.
    assert caller_turns_during_call == call.payloads(TurnUser)[:1]
    assert [t.text for t in call.payloads(TurnUser)] == [ORDER, "uh-huh"]


@pytest.mark.parametrize("rate", [8000, 16000])  # Twilio's phone line, WebRTC's wideband
@pytest.mark.parametrize(
    "ms_per_char",
    [
        pytest.param(5, id="cut-sentence-all-sent"),
        # The cut sentence was still being sent (the playout keeps 0.5 s ahead of playback):
        # what was heard of it is a share of its whole length, not of what had been sent.
        pytest.param(12, id="cut-sentence-partly-sent"),
    ],
)
async def test_what_the_caller_heard_of_a_reply_cut_mid_sentence(
    tmp_path: Path, ms_per_char: int, rate: int
) -> None:
    tts = FakeTts(ms_per_char=ms_per_char, rate=rate)
    async with fake_call(tmp_path, order_dialogue(), tts=tts, rate=rate) as call:
        await ask_for_order(call)
        await call.until(lambda: sent_frames(call, 1) > 0)
        first_reply_mark = next(p.mark for p in call.line.pieces() if p.mark.startswith("t1-"))
        await call.until(lambda: first_reply_mark in call.line.accepted_marks)
        await asyncio.sleep(0.15)  # into the next piece
        await call.say("hold on", ms=1000)
        await call.pause()
        await call.until(lambda: len(call.payloads(TurnUser)) == 2)

    cut = agent_turn(call, 1)
    assert cut.interrupted
    # What the line played, piece by piece, in words: the pieces whose marks came back whole,
    # then the share of the cut piece's frames that played before the clear.
    reply_pieces = [text for text in tts.spoken if text in LONG_REPLY]
    assert len(reply_pieces) == 2, reply_pieces
    runs = call.line.pieces()[1:3]  # after the greeting's
    assert runs[0].mark.startswith("t1-") and runs[0].mark in call.line.accepted_marks
    assert runs[0].frames == math.ceil(tts.samples_for(reply_pieces[0]) / call.line.frame)
    whole = reply_pieces[:1]
    cut_text, cut_run = reply_pieces[1], runs[1]
    assert cut_run.mark not in call.line.accepted_marks
    assert 0 < cut_run.heard_frames < cut_run.frames
    share = cut_run.heard_frames / math.ceil(tts.samples_for(cut_text) / call.line.frame)
    cut_words = cut_text.split()
    expected_words = [w for text in whole for w in text.split()]
    heard_words = cut.text.split()
    assert heard_words[: len(expected_words)] == expected_words
    partial = heard_words[len(expected_words) :]
    assert partial and partial == cut_words[: len(partial)]
    # The call counts words by playback time, the line by frames played: a word apart at most.
    assert abs(len(partial) - share * len(cut_words)) <= 1, (partial, share, cut_words)
    assert [t.text for t in call.payloads(TurnUser)] == [ORDER, "hold on"]


async def test_a_barge_in_that_held_no_words_is_a_false_one(tmp_path: Path) -> None:
    tts = FakeTts(ms_per_char=20)
    async with fake_call(tmp_path, order_dialogue(), tts=tts) as call:
        await ask_for_order(call)
        await call.noise(ms=1000)  # speech to the VAD, no words to the ASR
        await call.pause()
        await call.until(lambda: call.counted("parley_false_barge_ins_total") == 1)
        barge_ins = call.counted("parley_barge_ins_total")

    assert barge_ins == 1
    assert [t.text for t in call.payloads(TurnUser)] == [ORDER]
    assert agent_turn(call, 1).interrupted


async def test_digits_are_collected_in_a_digits_state(tmp_path: Path) -> None:
    dialogue = ScriptedDialogue(
        GREETING,
        replies={
            ORDER: Reply("What is your order number?", state="order_number", expecting="digits"),
            "4572": Reply("Order 4572 has shipped.", state="status"),
            "99": Reply("There is no order 99.", state="status"),
        },
    )
    async with fake_call(tmp_path, dialogue, dtmf_timeout_s=0.05) as call:
        await ask_for_order(call)
        await call.agent_done()
        assert dialogue.expecting == "digits"
        for digit in "4572#":
            await call.press(digit)
        await call.until(lambda: "Order 4572 has shipped." in call.tts.spoken)
        await call.agent_done()
        for digit in "99":  # no '#': the pause ends the digits
            await call.press(digit)
        await call.until(lambda: "There is no order 99." in call.tts.spoken)
        await call.agent_done()

    keyed = [t for t in call.payloads(TurnUser) if t.source == "dtmf"]
    assert [(t.turn_index, t.text) for t in keyed] == [(2, "4572"), (3, "99")]
    assert dialogue.inputs[1:] == [DtmfInput("4572"), DtmfInput("99")]
    assert dialogue.turn_indexes == [t.turn_index for t in call.payloads(TurnUser)] == [1, 2, 3]
    assert not any(t.interrupted for t in call.payloads(TurnAgent))


async def test_the_dialogues_facts_are_emitted_as_they_are(tmp_path: Path) -> None:
    """The dialogue yields the event payloads, with the index the call gave the turn; the
    escalation it yields is the call's one, not a second for the transfer that follows it."""
    dialogue = ScriptedDialogue(
        GREETING,
        replies={
            ORDER: Reply("What is your order number?", intent="order_status"),
            "0": Reply("Let me get you someone.", intent="human", escalate_to="+15550100200"),
        },
    )
    async with fake_call(tmp_path, dialogue, dtmf_timeout_s=0.05) as call:
        await ask_for_order(call)
        await call.agent_done()
        await call.press("0")
        await call.until(call.line.closed.is_set)  # the transfer, then the agent hangs up

    turns = call.payloads(TurnUser)
    intents = call.payloads(IntentDetected)
    assert [(i.turn_index, i.intent) for i in intents] == [(1, "order_status"), (2, "human")]
    assert [t.turn_index for t in turns] == [1, 2]
    assert call.payloads(EscalationRequested) == [
        EscalationRequested(reason="explicit_request", target="+15550100200")
    ]


async def test_a_key_pressed_over_the_agent_cuts_it_off(tmp_path: Path) -> None:
    tts = FakeTts(ms_per_char=20)
    dialogue = order_dialogue()
    async with fake_call(tmp_path, dialogue, tts=tts, dtmf_timeout_s=0.05) as call:
        await ask_for_order(call)
        await call.press("0")
        await call.until(lambda: len(call.payloads(TurnUser)) == 2)
        barge_ins = call.counted("parley_barge_ins_total")
        false_ones = call.counted("parley_false_barge_ins_total")

    assert agent_turn(call, 1).interrupted
    assert len(call.line.clears()) == 1
    assert dialogue.inputs[-1] == DtmfInput("0")
    assert (barge_ins, false_ones) == (1, 0)


async def test_a_failed_transcription_loses_the_turn_not_the_call(tmp_path: Path) -> None:
    dialogue = order_dialogue("It has shipped.")
    async with fake_call(tmp_path, dialogue) as call:
        await call.agent_done()
        call.asr.fail = True
        await call.say(ORDER)
        await call.pause()
        await call.until(lambda: call.counted("parley_asr_errors_total") >= 1)
        call.asr.fail = False
        since = len(call.line.sent)
        await call.say(ORDER)
        await call.pause()
        await call.agent_speaks(since)

    assert [(t.turn_index, t.text) for t in call.payloads(TurnUser)] == [(2, ORDER)]
    assert dialogue.inputs == [UserTurn(ORDER)]


@pytest.mark.parametrize("rate", [8000, 16000])  # Twilio's phone line, WebRTC's wideband
async def test_the_recording_is_at_the_calls_rate_with_both_legs(tmp_path: Path, rate: int) -> None:
    tts = FakeTts(ms_per_char=5, rate=rate)
    async with fake_call(
        tmp_path, order_dialogue("Friday."), tts=tts, rate=rate, record=True
    ) as call:
        await ask_for_order(call)
        await call.agent_done()
    recorder = call.session.recorder
    assert recorder is not None and call.session.recording_url is not None
    with wave.open(io.BytesIO(recorder.wav())) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, rate)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    # Both legs on one timeline: the caller's question, then the agent's answer after it.
    caller_loud = np.flatnonzero(np.abs(stereo[:, 0].astype(np.int32)) > 4000)
    agent_loud = np.flatnonzero(np.abs(stereo[:, 1].astype(np.int32)) > 4000)
    assert len(caller_loud) and len(agent_loud)
    assert agent_loud[-1] > caller_loud[-1]
    question = caller_loud[-1] - caller_loud[0]
    assert question == pytest.approx(rate * 0.48, rel=0.05)  # the 480 ms tone, at the call's rate
