"""Answering-machine evidence in the media node: the beep detector on synthetic beeps and on
greetings spoken by Piper (a voicemail greeting then a beep, a person answering, silence), the
long-greeting rule and the prompt phrases."""

from __future__ import annotations

import asyncio
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pytest

from media_nodes.audio.resample import resample
from media_nodes.audio.voicemail import (
    BeepDetector,
    GreetingTracker,
    screening_phrase,
    voicemail_phrase,
)
from media_nodes.tts.engines.piper import PiperTts

RATE = 8000


def tone(
    hz: float, ms: int, amplitude: float = 8000.0, noise: float = 0.0, rate: int = RATE
) -> npt.NDArray[np.int16]:
    t = np.arange(rate * ms // 1000) / rate
    rng = np.random.default_rng(7)
    signal = amplitude * np.sin(2 * np.pi * hz * t) + rng.normal(0, noise, len(t))
    return np.clip(signal, -32768, 32767).astype(np.int16)


def silence(ms: int, rate: int = RATE) -> npt.NDArray[np.int16]:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


@lru_cache(maxsize=4)
def spoken(text: str) -> npt.NDArray[np.int16]:
    async def synthesize() -> npt.NDArray[np.int16]:
        engine = PiperTts()
        chunks = [c async for c in engine.synthesize(text)]
        return resample(np.concatenate(chunks), engine.sample_rate, RATE)

    return asyncio.run(synthesize())


def beeps_in(audio: npt.NDArray[np.int16], rate: int = RATE) -> list[float]:
    detector = BeepDetector(rate)
    chunk = rate // 50  # 20 ms frames, as a call feeds them
    found: list[float] = []
    for start in range(0, len(audio), chunk):
        found += detector.feed(audio[start : start + chunk])
    found += detector.feed(silence(100, rate))  # the call goes quiet after the beep
    return found


@pytest.mark.parametrize("hz", [440.0, 850.0, 1000.0, 1400.0, 2100.0])
@pytest.mark.parametrize("rate", [8000, 16000])  # Twilio's phone line, WebRTC's wideband
def test_a_beep_is_found_where_it_ends(hz: float, rate: int) -> None:
    audio = np.concatenate(
        [silence(500, rate), tone(hz, 400, noise=300, rate=rate), silence(300, rate)]
    )
    (ended,) = beeps_in(audio, rate)
    assert 880 <= ended <= 960  # it ends at 900 ms


def test_a_faint_or_noisy_beep_still_counts_and_a_blip_does_not() -> None:
    assert len(beeps_in(np.concatenate([tone(1000, 300, amplitude=800, noise=60), silence(200)])))
    assert beeps_in(np.concatenate([tone(1000, 100), silence(200)])) == []  # 100 ms: a click
    assert beeps_in(silence(2000)) == []
    noise = np.random.default_rng(1).normal(0, 3000, RATE * 2).astype(np.int16)
    assert beeps_in(noise) == []


def test_a_gliding_tone_is_not_a_beep() -> None:
    t = np.arange(RATE) / RATE
    chirp = (8000 * np.sin(2 * np.pi * (500 * t + 400 * t**2))).astype(np.int16)  # 500 -> 1300
    assert beeps_in(chirp) == []


def test_piper_voicemail_greeting_then_the_beep() -> None:
    greeting = spoken(
        "Hi, you've reached Sam. I can't come to the phone right now. "
        "Please leave a message after the tone."
    )
    audio = np.concatenate([greeting, silence(300), tone(1000, 500), silence(500)])
    found = beeps_in(audio)
    beep_end_ms = (len(greeting) + RATE * 800 // 1000) * 1000 / RATE
    assert len(found) == 1 and abs(found[0] - beep_end_ms) <= 60
    assert voicemail_phrase("Please leave a message after the tone.") is not None


def test_a_person_answering_in_piper_voice_has_no_beep_and_no_long_greeting() -> None:
    hello = spoken("Hello? Who is this?")
    assert beeps_in(np.concatenate([hello, silence(1000), hello])) == []
    tracker = GreetingTracker()
    said = [tracker.observe(True, 20) for _ in range(60)]  # 1.2 s of 'hello?'
    said += [tracker.observe(False, 20) for _ in range(50)]  # then waits for us
    assert not any(said)
    assert voicemail_phrase("Hello? Who is this?") is None


def test_a_machine_talks_on_past_the_long_greeting_mark() -> None:
    tracker = GreetingTracker()
    verdicts = []
    for _ in range(6):  # 6 x (700 ms speech + 300 ms breath): no pause long enough
        verdicts += [tracker.observe(True, 20) for _ in range(35)]
        verdicts += [tracker.observe(False, 20) for _ in range(15)]
    assert any(verdicts)


@pytest.mark.parametrize(
    "text",
    [
        "You have reached the voicemail of Dana Smith",
        "The person you are calling is not available. At the tone, record your message.",
        "I can't get to the phone, leave me a message",
    ],
)
def test_voicemail_phrases(text: str) -> None:
    assert voicemail_phrase(text) is not None


def test_call_screening_prompts() -> None:
    assert (
        screening_phrase("Hi, the person you're calling is using a screening service") is not None
    )
    assert screening_phrase("Go ahead and say your name and why you're calling") is not None
    assert screening_phrase("This call is being screened, hold on") == "being screened"
    assert screening_phrase("Hi, this is Sam, how can I help?") is None
