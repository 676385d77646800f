#!/usr/bin/env python3
"""Make the caller audio in examples/audio/ with Piper (the packaged CC0 voice).

Real phone callers are what Parley hears, so the clips are 8 kHz mono 16-bit WAV, a few seconds
each. ``manifest.json`` keeps each clip's text so tests can check transcripts word by word.
Piper samples its voice randomly, so a clip made again sounds a little different: existing clips
are kept unless ``--force`` is given.

    .venv/bin/python scripts/make_caller_audio.py [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "examples" / "audio"
RATE = 8000

# name -> what the caller says (the demo call: order_status, order_number, yes, human).
LINES = {
    "order_status": "Hi, I want to check the status of my order.",
    "order_number": "The order number is four five seven two.",
    "yes": "Yes, that's right.",
    "human": "Can I talk to a real person please?",
    "goodbye": "No thanks, that's all. Goodbye.",
    "opening_hours": "What are your opening hours?",
    "interrupt": "Hold on, I want to talk to a person.",
    "backchannel": "Mm-hmm.",
    "stop": "No, stop.",
}


def main() -> None:
    from media_nodes.audio.resample import resample
    from media_nodes.tts.engines.piper import PiperTts

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="Make every clip again.")
    args = parser.parse_args()
    tts = PiperTts()
    OUT.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name, text in LINES.items():
        path = OUT / f"{name}.wav"
        if not args.force and path.exists() and manifest.get(name, {}).get("text") == text:
            continue
        audio = np.concatenate(tts._synthesize(text))
        phone = resample(audio, tts.sample_rate, RATE)
        tail = np.zeros(RATE // 10, dtype=np.int16)  # 100 ms of room after the last word
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(np.concatenate([phone, tail]).astype("<i2").tobytes())
        manifest[name] = {"file": path.name, "text": text, "seconds": round(len(phone) / RATE, 2)}
        print(f"{path.relative_to(ROOT)}  {manifest[name]['seconds']:.2f} s  {text}")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
