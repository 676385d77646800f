"""What the caller's words survive: ASR word error rate and voice-to-voice, Twilio 8 kHz vs WebRTC.

The same utterances (examples/audio/manifest.json's texts, or with ``--held-out`` the held-out
paraphrases of an agent's eval set, spoken by Piper at its own 22.05 kHz) go through one media
node (real models, the example agent, a scratch PostgreSQL database) by each transport, one call
per utterance:

- ``twilio``: the Twilio simulator - the speech cut to 8 kHz and mu-law, as a phone line carries it;
- ``webrtc``: the aiortc caller - the speech at 48 kHz through Opus; the node hears it at 16 kHz.

What the node heard is read back from the call's projected transcript (``call_turns``), the
voice-to-voice latency is measured at the caller. Prints WER per transport and v2v medians.

    python bench/wideband.py --out .parley/bench/wideband.json
    python bench/wideband.py --held-out examples/agents/acme-shop/eval/held_out.yaml --limit 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from latency_webrtc import local_node  # noqa: E402

from media_nodes.audio.resample import resample  # noqa: E402
from media_nodes.simulator.caller import Say, SimulatedCaller  # noqa: E402
from media_nodes.simulator.webrtc_caller import WebRtcCaller  # noqa: E402
from media_nodes.transports.webrtc import WEBRTC_RATE  # noqa: E402
from media_nodes.tts.engines.piper import PiperTts  # noqa: E402

MANIFEST = ROOT / "examples" / "audio" / "manifest.json"
DIGITS = "zero one two three four five six seven eight nine".split()
LEAD_MS = 200  # silence before the speech: the first word is not on the first frame


def held_out(path: Path, limit: int) -> list[str]:
    """The eval file's paraphrases (state -> intent -> utterances), ``limit`` of them spread
    over the whole file so every intent is represented."""
    found = [
        text
        for intents in yaml.safe_load(path.read_text()).values()
        for texts in intents.values()
        for text in texts
    ]
    step = max(1, len(found) // limit) if limit else 1
    return found[::step][:limit] if limit else found


def words(text: str) -> list[str]:
    """Lower case, digits spelled out, punctuation dropped: 4572 and "four five seven two" agree."""
    spelled = re.sub(r"\d", lambda m: f" {DIGITS[int(m.group())]} ", text.lower())
    return re.sub(r"[^a-z' ]+", " ", spelled.replace("'", "")).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1]


async def piper(text: str, engine: PiperTts) -> tuple[npt.NDArray[np.int16], int]:
    chunks = [c async for c in engine.synthesize(text)]
    lead = np.zeros(engine.sample_rate * LEAD_MS // 1000, dtype=np.int16)
    return np.concatenate([lead, *chunks, lead]), engine.sample_rate


def heard(database_url: str, call_id: str, timeout_s: float = 20.0) -> str:
    """The caller's words as the node transcribed them, once the call's record is complete."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url) as conn:
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT disposition FROM calls WHERE call_id = %s", (call_id,)
            ).fetchone()
            if done and done[0]:
                rows = conn.execute(
                    "SELECT text FROM call_turns WHERE call_id = %s AND speaker = 'caller'"
                    " ORDER BY turn_index",
                    (call_id,),
                ).fetchall()
                return " ".join(r[0] for r in rows)
            conn.rollback()
            time.sleep(0.2)
    return ""


async def twilio_call(
    base: str, audio: npt.NDArray[np.int16], rate: int
) -> tuple[str, float | None]:
    caller = SimulatedCaller(f"{base}/twilio/stream")
    result = await caller.run([Say(resample(audio, rate, 8000), label="utterance")])
    latencies = [t.latency_ms for t in result.turns if t.latency_ms is not None]
    return result.call_sid, latencies[0] if latencies else None


async def webrtc_call(
    base: str, audio: npt.NDArray[np.int16], rate: int
) -> tuple[str, float | None]:
    caller = WebRtcCaller(f"{base}/webrtc/signal")
    try:
        await caller.connect()
        await caller.say(resample(audio, rate, WEBRTC_RATE), label="utterance")
        if not caller.ended:
            await caller.wait_agent_done()
            await caller.hang_up()
    finally:
        await caller.close()
    latencies = [t.latency_ms for t in caller.result.turns if t.latency_ms is not None]
    return caller.result.call_id or "", latencies[0] if latencies else None


async def run(base: str, database_url: str, texts: list[str]) -> dict[str, Any]:
    engine = PiperTts()
    spoken = [await piper(text, engine) for text in texts]
    report: dict[str, Any] = {"utterances": texts, "transports": {}}
    for transport, place in (("twilio", twilio_call), ("webrtc", webrtc_call)):
        errors = reference = 0
        v2v: list[float] = []
        rows = []
        for text, (audio, rate) in zip(texts, spoken, strict=True):
            call_id, latency = await place(base, audio, rate)
            hypothesis = await asyncio.to_thread(heard, database_url, call_id)
            ref, hyp = words(text), words(hypothesis)
            errors += edit_distance(ref, hyp)
            reference += len(ref)
            if latency is not None:
                v2v.append(latency)
            rows.append({"text": text, "heard": hypothesis, "v2v_ms": latency})
        report["transports"][transport] = {
            "wer": round(errors / max(1, reference), 4),
            "word_errors": errors,
            "words": reference,
            "v2v_p50_ms": round(statistics.median(v2v), 1) if v2v else None,
            "v2v_n": len(v2v),
            "calls": rows,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--admin-database-url",
        default="postgresql://postgres@127.0.0.1:54329/postgres",
        help="PostgreSQL where a scratch database is created for the started node",
    )
    parser.add_argument("--held-out", type=Path, help="an agent's eval paraphrases (YAML)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many of them")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the utterances")
    parser.add_argument("--out", type=Path, default=ROOT / ".parley/bench/wideband.json")
    args = parser.parse_args()
    if args.held_out is not None:
        texts = held_out(args.held_out, args.limit)
    else:
        texts = [entry["text"] for entry in json.loads(MANIFEST.read_text()).values()]
    texts *= args.repeat
    with contextlib.ExitStack() as stack:
        base, database_url = local_node(stack, args.admin_database_url)
        report = asyncio.run(run(base, database_url, texts))
    report["machine"] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{'transport':<9} {'WER':>7} {'errors/words':>13} {'v2v p50 ms':>11} {'n':>3}")
    for name, data in report["transports"].items():
        counted = f"{data['word_errors']}/{data['words']}"
        print(
            f"{name:<9} {data['wer']:>7.1%} {counted:>13} {data['v2v_p50_ms']!s:>11}"
            f" {data['v2v_n']:>3}"
        )
    print(f"load average (1 min) at the end: {report['machine']['load_average_1m']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
