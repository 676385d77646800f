"""Caller turns under background noise, through the node's own VAD, room gate and turn detector.

    .venv/bin/python bench/noise.py

Noise beds are made here (media_nodes/simulator/noise.py): babble of four talkers looping
fresh Piper sentences, street (rumble + hiss), mains hum, music-like tones; each mixed at 15, 10
and 5 dB under 5 s of "agent talking" (caller silent: any turn that reaches the barge-in length
there is a false barge-in) followed by one of Parley's caller clips. Per bed and SNR, with the
room gate off and on: false barge-ins, turns answered (ended within 1.5 s of the caller
stopping), wrong endings (ended before the caller stopped, or more than one turn), and the wait
from the caller's last word to the end of the turn (the endpoint part of voice-to-voice).
Whole calls with a noise bed are in tests/media/test_room_noise.py (SimulatedCaller background).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.suppressor import RnNoise
from media_nodes.audio.resample import resample, to_float32
from media_nodes.audio.room import RoomNoise
from media_nodes.audio.turn import TurnDetector, TurnEnded
from media_nodes.audio.vad import SileroModel, StreamingVad
from media_nodes.simulator import noise
from media_nodes.simulator.caller import load_wav
from media_nodes.tts.engines import TTS_ENGINES
from media_nodes.tts.voice import Voice
from shared.settings import Settings, load_settings

AUDIO = Path(__file__).resolve().parents[1] / "examples" / "audio"
CLIPS = ("order_status", "order_number", "yes", "human", "opening_hours", "goodbye")
ROOM = (
    "I was going to tell you about the weekend, it was great.",
    "Did you see the game last night? Unbelievable.",
    "We should get lunch at the new place downtown.",
    "Can you pass me the file from yesterday's meeting?",
    "My sister is visiting next month with the kids.",
)
AGENT_MS = 5000


async def piper_sentences() -> list[np.ndarray]:
    voice = Voice(TTS_ENGINES.load("auto", load_settings()))
    return [
        np.concatenate([c async for c in voice.speak(text, 8000, cache=False)]) for text in ROOM
    ]


def one_turn(
    vad: SileroModel,
    bed: np.ndarray,
    speech: np.ndarray,
    gated: bool,
    barge_in_ms: int,
    suppressor: RnNoise | None = None,
) -> tuple:
    start = AGENT_MS * 8
    mixed = bed[: start + len(speech) + 8000 * 4].astype(np.int32)
    mixed[start : start + len(speech)] += speech
    line = np.clip(mixed, -32768, 32767).astype(np.int16)
    wide = suppressor.clean(line, 8000, 16000) if suppressor else resample(line, 8000, 16000)
    samples = to_float32(wide)
    room = RoomNoise()
    levels = room.levels(samples)
    detector = TurnDetector(endpoint_ms=400, speculative_ms=160)
    barge = False
    ends: list[tuple[int, int, int]] = []
    for p, level in zip(StreamingVad(vad).process(samples), levels, strict=False):
        if gated:
            p = room.gate(p, level, turn_ms=detector.turn_ms, over_agent=detector.now_ms < AGENT_MS)
        for event in detector.push(p):
            if isinstance(event, TurnEnded):
                ends.append((event.start_ms, event.end_ms, detector.now_ms))
        if detector.in_speech and detector.voiced_ms >= barge_in_ms and detector.now_ms < AGENT_MS:
            barge = True
    caller_end = (start + len(speech)) // 8
    caller_ends = [e for e in ends if e[1] >= AGENT_MS]
    answered = [e for e in caller_ends if e[2] - caller_end <= 1500]
    wrong = len(caller_ends) != 1 or (bool(caller_ends) and caller_ends[0][2] < caller_end)
    wait = caller_ends[-1][2] - caller_end if caller_ends else None
    return barge, bool(answered), wrong, wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--barge-in-ms",
        type=int,
        default=Settings.model_fields["barge_in_min_speech_ms"].default,
        help="Speech over the agent that holds it (PARLEY_BARGE_IN_MIN_SPEECH_MS).",
    )
    parser.add_argument(
        "--suppressor",
        choices=("none", "rnnoise"),
        default="none",
        help="Also run every case through a noise suppressor before the VAD (rnnoise: "
        "bench/suppressor.py), and print its cost per call.",
    )
    args = parser.parse_args()
    suppressors: list[RnNoise | None] = [None]
    if args.suppressor == "rnnoise":
        suppressors.append(RnNoise())
    sentences = asyncio.run(piper_sentences())
    seconds = AGENT_MS / 1000 + 12
    # Babble from three mixes of the sentences: one mix's bursts decide too much on their own
    # (Piper's speech also differs a little from process to process, so runs differ).
    beds = {
        "babble": [noise.babble(sentences, seconds, seed=seed) for seed in range(3)],
        "street": [noise.street(seconds)],
        "hum": [noise.hum(seconds)],
        "tones": [noise.tones(seconds)],
    }
    manifest = json.loads((AUDIO / "manifest.json").read_text())
    clips = [load_wav(AUDIO / manifest[name]["file"]) for name in CLIPS]
    vad = SileroModel()
    print(
        f"{'bed':<7} {'SNR':>4} {'gate':<4} {'denoise':<7} {'false barge-in':>14} "
        f"{'answered':>9} {'wrong end':>9} {'wait p50 ms':>11}"
    )
    audio_s = 0.0
    for name, mixes in beds.items():
        for snr in (15, 10, 5):
            for gated, suppressor in itertools.product((False, True), suppressors):
                rows = []
                for bed, speech in itertools.product(mixes, clips):
                    scaled = noise.scale_to_snr(bed, noise.speech_rms(speech), snr)
                    rows.append(one_turn(vad, scaled, speech, gated, args.barge_in_ms, suppressor))
                    if suppressor:
                        audio_s += (AGENT_MS * 8 + len(speech) + 8000 * 4) / 8000
                waits = [r[3] for r in rows if r[3] is not None]
                n = len(rows)
                print(
                    f"{name:<7} {snr:>4} {'on' if gated else 'off':<4} "
                    f"{'rnnoise' if suppressor else '-':<7} "
                    f"{sum(r[0] for r in rows):>11}/{n} {sum(r[1] for r in rows):>6}/{n} "
                    f"{sum(r[2] for r in rows):>6}/{n} "
                    f"{statistics.median(waits) if waits else float('nan'):>11.0f}"
                )
    denoiser = suppressors[-1]
    if denoiser is not None and audio_s:
        share = denoiser.seconds / audio_s
        print(
            f"rnnoise cost: {denoiser.seconds:.1f} s of CPU for {audio_s:.0f} s of call audio "
            f"(8 -> 48 -> 16 kHz included): {share * 100:.1f}% of one core per call"
        )


if __name__ == "__main__":
    main()
