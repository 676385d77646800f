"""The learned end of turn: the Smart Turn model file, its features and verdicts on real speech,
the wait rule, and how the detector and the dialogue use them."""

from __future__ import annotations

import numpy as np
import pytest

from media_nodes.audio.end_of_turn import (
    MODEL_SHA256,
    SmartTurnModel,
    WaitPolicy,
    endpoint_wait_ms,
    file_sha256,
    smart_turn_model_path,
)
from media_nodes.audio.resample import resample, to_float32
from media_nodes.audio.turn import SpeechPaused, SpeechStarted, TurnDetector, TurnEnded
from media_nodes.models import Models
from media_nodes.simulator.caller import Say, call, load_wav
from shared.events.models import TurnUser
from tests.media.conftest import AUDIO, PATIENT, NodeFactory, clip

# The exact file reviewed and licensed (BSD-2-Clause, Daily): a new wheel must be re-checked.
PINNED_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def test_the_model_file_is_the_pinned_one() -> None:
    path = smart_turn_model_path()
    assert path.name == "smart-turn-v3.2-cpu.onnx"
    assert file_sha256(path) == PINNED_SHA256 == MODEL_SHA256


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurnModel:
    return SmartTurnModel()


def clip_16k(name: str) -> np.ndarray:
    return to_float32(resample(load_wav(AUDIO / name), 8000, 16000))


def test_features_are_80_by_800_of_the_last_8_seconds(smart_turn: SmartTurnModel) -> None:
    audio = clip_16k("order_status.wav")
    features = smart_turn.features(audio)
    assert features.shape == (80, 800) and features.dtype == np.float32
    longer = np.concatenate([np.zeros(16000 * 5, np.float32), audio])
    assert np.allclose(smart_turn.features(longer), smart_turn.features(longer[-16000 * 8 :]))


def test_a_whole_sentence_sounds_more_finished_than_its_first_half(
    smart_turn: SmartTurnModel,
) -> None:
    audio = clip_16k("order_status.wav")  # "Hi, I want to check the status of my order."
    whole = smart_turn.complete_probability(np.concatenate([audio, np.zeros(3200, np.float32)]))
    half = smart_turn.complete_probability(audio[: int(len(audio) * 0.55)])
    assert whole > 0.5 > half, (whole, half)


def test_the_wait_rule() -> None:
    policy = WaitPolicy(base_ms=400, complete_ms=240, incomplete_ms=900, cap_ms=1400, yes_no_ms=200)
    assert endpoint_wait_ms(policy, None, None) == 400
    assert endpoint_wait_ms(policy, 0.9, None) == 240
    assert endpoint_wait_ms(policy, 0.1, None) == 900
    assert endpoint_wait_ms(policy, 0.9, "yes_no") == 200
    assert endpoint_wait_ms(policy, 0.1, "yes_no") == 900
    defaults = WaitPolicy()
    assert endpoint_wait_ms(defaults, 0.99, None) == defaults.base_ms  # see complete_ms
    # A number read in groups: the model calling "four five seven" complete must not end it.
    assert endpoint_wait_ms(policy, 0.9, "digits") == policy.digits_ms
    assert endpoint_wait_ms(policy, None, "digits") == policy.digits_ms
    capped = WaitPolicy(incomplete_ms=3000, digits_ms=3000, cap_ms=1000)
    assert endpoint_wait_ms(capped, 0.0, "digits") == 1000


def run(detector: TurnDetector, probabilities: list[float]) -> list[object]:
    return [event for p in probabilities for event in detector.push(p)]


def test_a_verdict_of_complete_ends_a_pause_already_long_enough() -> None:
    detector = TurnDetector(endpoint_ms=400, speculative_ms=160)
    events = run(detector, [0.9] * 10 + [0.0] * 8)  # 256 ms of silence: the base wait is 400
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused]
    (ended,) = detector.set_wait(240)
    assert isinstance(ended, TurnEnded) and ended.end_ms == 320
    assert not detector.in_speech


def test_a_verdict_of_incomplete_holds_the_turn_past_the_base_wait() -> None:
    detector = TurnDetector(endpoint_ms=400, speculative_ms=160)
    run(detector, [0.9] * 10 + [0.0] * 6)
    assert detector.set_wait(900) == []
    assert run(detector, [0.0] * 20) == []  # 832 ms of silence: still the caller's turn
    assert [type(e) for e in run(detector, [0.0] * 3)] == [TurnEnded]


def test_a_verdict_lasts_only_until_the_caller_speaks_again() -> None:
    detector = TurnDetector(endpoint_ms=400, speculative_ms=160)
    run(detector, [0.9] * 10 + [0.0] * 6)
    detector.set_wait(900)
    run(detector, [0.9] * 3)
    assert detector.wait_ms == 400
    assert detector.set_wait(240) == []  # no pause now: nothing to judge
    assert detector.wait_ms == 400


SPOKEN_DIGITS = {
    w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine".split())
}


def digits_in(text: str) -> str:
    out = []
    for word in text.lower().replace("-", " ").split():
        word = word.strip(".,!?")
        out.append(SPOKEN_DIGITS.get(word, "".join(c for c in word if c.isdigit())))
    return "".join(out)


async def synthesized(models: Models, text: str) -> np.ndarray:
    return np.concatenate([chunk async for chunk in models.voice.speak(text, 8000, cache=False)])


async def test_a_number_read_in_groups_is_one_turn(models: Models, start_node: NodeFactory) -> None:
    """Asked for the order number, the caller reads ten digits in three groups with pauses
    longer than any wait for ordinary speech: the turn holds until the last group."""
    groups = [
        await synthesized(models, g)
        for g in ("five five five,", "one two three,", "four five six seven.")
    ]
    pause = np.zeros(int(0.8 * 8000), dtype=np.int16)
    number = np.concatenate([groups[0], pause, groups[1], pause, groups[2]])
    async with start_node() as running:
        result = await call(
            running.url, [clip("order_status"), Say(number, label="number")], **PATIENT
        )
        events = await running.wait_call_ended(result.call_sid)
    said = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    assert len(said) == 2, [(t.turn_index, t.text) for t in said]
    # Every group is in the one turn (tiny.en sometimes hears a group's digit twice).
    heard = digits_in(said[1].text)
    assert heard.startswith("555") and heard.endswith("1234567"), said[1].text


async def test_a_caller_who_stops_mid_clause_is_one_turn(
    models: Models, start_node: NodeFactory
) -> None:
    """The caller breaks off after "...to my" for longer than the ordinary wait: the transcript
    at the pause ends where no sentence can, so the turn holds for the rest."""
    first = await synthesized(models, "Could you send the invoice to my")
    rest = await synthesized(models, "work address please.")
    pause = np.zeros(int(0.5 * 8000), dtype=np.int16)  # with Piper's own silences: ~0.7 s
    async with start_node() as running:
        result = await call(
            running.url, [Say(np.concatenate([first, pause, rest]), label="invoice")], **PATIENT
        )
        events = await running.wait_call_ended(result.call_sid)
    said = [e.payload.text for e in events if isinstance(e.payload, TurnUser)]
    assert len(said) == 1, said
    assert "invoice" in said[0].lower() and "address" in said[0].lower(), said
