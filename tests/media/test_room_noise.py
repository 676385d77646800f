"""Background noise: babble made from synthesized sentences, mixed under the caller at 10 dB.
The room's own talk must neither barge in over the agent nor keep a caller's turn open."""

from __future__ import annotations

import numpy as np
import pytest

from media_nodes.audio.resample import resample, to_float32
from media_nodes.audio.room import RoomNoise
from media_nodes.audio.turn import SpeechStarted, TurnDetector, TurnEnded
from media_nodes.audio.vad import StreamingVad
from media_nodes.models import Models
from media_nodes.simulator import noise
from media_nodes.simulator.caller import call, load_wav
from shared.events.models import TurnAgent, TurnUser
from tests.media.conftest import AUDIO, MANIFEST, PATIENT, NodeFactory, clip, words

# The room's talkers: Parley's own caller clips, other than the one the caller says (fixed
# audio, so the bed is the same every run; bench/noise.py makes babble from fresh Piper speech).
ROOM_CLIPS = ("human", "opening_hours", "interrupt", "goodbye", "order_number")


@pytest.fixture(scope="module")
def babble_bed() -> np.ndarray:
    talk = [load_wav(AUDIO / MANIFEST[name]["file"]) for name in ROOM_CLIPS]
    return noise.babble(talk, 20.0)


def under(bed: np.ndarray, snr_db: float) -> np.ndarray:
    level = noise.speech_rms(load_wav(AUDIO / "order_status.wav"))
    return noise.scale_to_snr(bed, level, snr_db)


def detect(models: Models, audio: np.ndarray, room: RoomNoise | None) -> list[object]:
    samples = to_float32(resample(audio, 8000, 16000))
    probabilities = StreamingVad(models.vad).process(samples)
    levels = RoomNoise().levels(samples) if room is None else room.levels(samples)
    detector = TurnDetector(endpoint_ms=400, speculative_ms=160)
    events: list[object] = []
    for p, level in zip(probabilities, levels, strict=True):
        if room is not None:
            p = room.gate(p, level, turn_ms=detector.turn_ms)
        events.extend(detector.push(p))
    return events


def test_babble_alone_opens_no_turn_through_the_gate(
    models: Models, babble_bed: np.ndarray
) -> None:
    bed = under(babble_bed, 10)[: 8000 * 8]
    assert any(isinstance(e, SpeechStarted) for e in detect(models, bed, None)), (
        "Silero alone takes babble for speech (else this test proves nothing)"
    )
    assert detect(models, bed, RoomNoise()) == []


def test_a_turn_in_babble_ends_soon_after_the_caller_stops(
    models: Models, babble_bed: np.ndarray
) -> None:
    speech = load_wav(AUDIO / "order_status.wav")
    bed = under(babble_bed, 10)[: 8000 * 10]
    mixed = bed.astype(np.int32)
    mixed[8000 * 4 : 8000 * 4 + len(speech)] += speech
    audio = np.clip(mixed, -32768, 32767).astype(np.int16)
    ended = [e for e in detect(models, audio, RoomNoise()) if isinstance(e, TurnEnded)]
    caller_end_ms = (8000 * 4 + len(speech)) // 8
    assert len(ended) == 1, ended
    assert ended[0].start_ms < 4000 + 500 and caller_end_ms - 1000 < ended[0].end_ms
    assert ended[0].end_ms < caller_end_ms + 500


async def test_babble_under_the_greeting_does_not_barge_in(
    start_node: NodeFactory, babble_bed: np.ndarray
) -> None:
    async with start_node() as running:
        result = await call(
            running.url, [clip("order_status")], background=under(babble_bed, 10), **PATIENT
        )
        events = await running.wait_call_ended(result.call_sid)
    assert result.clears == 0, [(e.type, getattr(e.payload, "text", "")) for e in events]
    greeting = next(e.payload for e in events if isinstance(e.payload, TurnAgent))
    assert not greeting.interrupted


async def test_a_turn_with_babble_under_it_is_answered(
    start_node: NodeFactory, babble_bed: np.ndarray
) -> None:
    async with start_node() as running:
        result = await call(
            running.url, [clip("order_status")], background=under(babble_bed, 10), **PATIENT
        )
        events = await running.wait_call_ended(result.call_sid)
    said = [e.payload for e in events if isinstance(e.payload, TurnUser)]
    # One turn, answered. Whisper tiny.en garbles words under 10 dB babble ("I would have checked
    # the data" for "can you check the status of my order"), and where the babble falls in its
    # window changes with timing, so only the stem it keeps is checked.
    assert len(said) == 1, [t.text for t in said]
    assert any(w.startswith("check") for w in words(said[0].text)), said[0].text
    assert result.turns[0].latency_ms is not None
    answers = [e.payload for e in events if isinstance(e.payload, TurnAgent)]
    assert [a.turn_index for a in answers][:2] == [0, 1]


def test_a_room_silero_hears_late_is_learnt_even_inside_a_turn() -> None:
    """Silero may take over a second to fire on babble: the first windows sound like a quiet
    room, and a burst then opens a "turn". The room is still learnt while that turn lasts, so
    the babble that follows is recognised as the room's."""
    room = RoomNoise()
    for _ in range(40):  # 1.3 s of babble Silero does not yet call speech
        room.gate(0.1, -28.0)
    for _ in range(60):  # then it does, inside the turn the burst opened
        room.gate(0.9, -28.0, turn_ms=500)
    assert room.talking_room


def test_over_the_agent_babble_needs_the_full_margin() -> None:
    room = RoomNoise()
    for _ in range(100):
        room.gate(0.9, -28.0)  # a talking room at -28 dB
    assert room.talking_room
    a_little_above = -28.0 + (room.margin_db + room.in_turn_margin_db) / 2
    assert room.gate(0.9, a_little_above, turn_ms=300) == 0.9  # the caller's softer last words
    assert room.gate(0.9, a_little_above, turn_ms=300, over_agent=True) == 0.0
    assert room.gate(0.9, -28.0 + room.margin_db + 1, turn_ms=300, over_agent=True) == 0.9
