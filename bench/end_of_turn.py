"""Smart Turn on Parley's own 8 kHz caller audio: complete utterances vs the same cut short.

    .venv/bin/python bench/end_of_turn.py

Each clip in examples/audio is judged whole (plus 160 ms of silence, as at the speculative
pause) and cut at 40 %, 60 % and 80 % of its length. A cut judged complete is a false ending
(the wait shortens and the caller may be cut off, up to the dialogue's digit rule); a whole clip
judged incomplete is an extra wait (the turn waits incomplete_ms instead of complete_ms).
Also prints the cost of one inference on this machine.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from media_nodes.audio.end_of_turn import SmartTurnModel
from media_nodes.audio.resample import resample, to_float32
from media_nodes.simulator.caller import load_wav

AUDIO = Path(__file__).resolve().parents[1] / "examples" / "audio"
CUTS = (0.4, 0.6, 0.8)


def main() -> None:
    model = SmartTurnModel()
    manifest = json.loads((AUDIO / "manifest.json").read_text())
    costs: list[float] = []
    extra_waits = false_endings = cuts_judged = 0

    def judge(audio: np.ndarray) -> float:
        started = time.perf_counter()
        probability = model.complete_probability(audio)
        costs.append((time.perf_counter() - started) * 1000)
        return probability

    print(f"{'clip':<18} {'whole':>6} " + " ".join(f"{int(c * 100):>5}%" for c in CUTS))
    for name, entry in manifest.items():
        audio = to_float32(resample(load_wav(AUDIO / entry["file"]), 8000, 16000))
        whole = judge(np.concatenate([audio, np.zeros(2560, np.float32)]))
        cut = [judge(audio[: int(len(audio) * c)]) for c in CUTS]
        extra_waits += whole < 0.5
        false_endings += sum(p >= 0.5 for p in cut)
        cuts_judged += len(cut)
        print(f"{name:<18} {whole:6.2f} " + " ".join(f"{p:6.2f}" for p in cut))
    print(
        f"\n{len(manifest)} whole clips: {extra_waits} extra waits; "
        f"{cuts_judged} cut clips: {false_endings} false endings"
    )
    print(
        f"inference ms: p50 {statistics.median(costs):.0f}, max {max(costs):.0f} "
        f"({len(costs)} runs, one thread)"
    )


if __name__ == "__main__":
    main()
