"""Voice-to-voice latency of Twilio calls, measured where the caller is.

Starts a media node in its own process (real models, the example agent ``acme-shop``, the
embedded bus and projector, a scratch PostgreSQL database) and places N calls x M turns through
the Twilio simulator, one call at a time. Voice-to-voice is measured at the caller: its last
voiced frame sent -> the first voiced agent frame received. The node's per-stage figures (endpoint
wait, ASR, dialogue first text, TTS first audio, node-side voice-to-voice) come from the
``latency.measured`` events the projector wrote to ``call_latency``. Prints p50/p95, writes JSON.

    .venv/bin/python bench/latency.py --calls 5 --turns 4
    .venv/bin/python bench/latency.py --url ws://127.0.0.1:8765/twilio/stream  # a running node
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from media_nodes.simulator.caller import CallResult, Say, call, load_wav  # noqa: E402

AUDIO = ROOT / "examples" / "audio"
SCRIPT = ["order_status", "order_number", "yes", "human"]  # intent, slot, confirm, escalation
STAGES = (
    "endpoint_ms",
    "asr_ms",
    "dialogue_first_text_ms",
    "tts_first_audio_ms",
    "voice_to_voice_ms",
)
ADMIN_URL = os.environ.get(
    "PARLEY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:54329/postgres"
)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 1)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "mean": round(statistics.fmean(values), 1) if values else None,
    }


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_avg_1m": round(load[0], 2),
    }


@contextlib.contextmanager
def scratch_database(admin_url: str = ADMIN_URL) -> Iterator[str]:
    from urllib.parse import urlsplit, urlunsplit

    from shared.db import migrate

    name = f"parley_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def media_node(
    database_url: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A node in its own process; yields (stream URL, process)."""
    port = free_port()
    env = {
        **os.environ,
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_DATA_DIR": str(data_dir),
        "PARLEY_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        **(extra_env or {}),
    }
    log = (data_dir / "node.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "media_nodes.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"media node exited: see {data_dir / 'node.log'}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            time.sleep(0.3)
        yield f"ws://127.0.0.1:{port}/twilio/stream", process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
_voice: Any = None


def order_number_clip() -> tuple[Say, str]:
    """A fresh random order number, spoken by Piper: the agent's reply quoting it is new text for
    the TTS (no cache hit), as real calls with their own numbers and names are."""
    global _voice
    from media_nodes.audio.resample import resample
    from media_nodes.tts.engines.piper import PiperTts

    if _voice is None:
        _voice = PiperTts()
    digits = "".join(random.choice("123456789") for _ in range(4))
    text = "The order number is " + " ".join(DIGIT_WORDS[int(d)] for d in digits) + "."
    audio = np.concatenate(_voice._synthesize(text))
    return Say(resample(audio, _voice.sample_rate, 8000), label="order_number"), digits


def call_script(turns: int, unique: bool) -> list[Say]:
    steps = [Say(load_wav(AUDIO / f"{name}.wav"), label=name) for name in SCRIPT[:turns]]
    if unique and turns >= 2:
        steps[1] = order_number_clip()[0]
    return steps


def stage_rows(database_url: str, call_ids: list[str]) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT * FROM call_latency WHERE call_id = ANY(%s)", (call_ids,)
        ).fetchall()
    return [dict(r) for r in rows]


async def place_calls(url: str, calls: int, turns: int, unique: bool) -> list[CallResult]:
    results = []
    for index in range(calls):
        result = await call(url, call_script(turns, unique))
        latencies = [t.latency_ms for t in result.turns]
        print(f"call {index + 1}/{calls}: greeting {result.greeting_ms} ms, turns {latencies}")
        results.append(result)
    return results


def _latencies(results: list[CallResult]) -> list[float]:
    return [t.latency_ms for r in results for t in r.turns if t.latency_ms is not None]


async def place_barge_ins(url: str, calls: int) -> list[float]:
    """Calls that talk over the greeting: caller speech onset -> ``clear`` received."""
    interrupt = Say(load_wav(AUDIO / "interrupt.wav"), label="interrupt", barge_in_after_ms=1500)
    out = []
    for _ in range(calls):
        result = await call(url, [interrupt])
        clear_ms = result.turns[0].barge_in_clear_ms
        print(f"barge-in: clear {clear_ms} ms after the caller started speaking")
        if clear_ms is not None:
            out.append(clear_ms)
    return out


async def place_backchannels(url: str, calls: int) -> list[float]:
    """Calls that say "mm-hmm" over the greeting: how long the agent is silent (held) before it
    goes on (``clear`` -> voiced agent audio again)."""
    backchannel = Say(load_wav(AUDIO / "backchannel.wav"), label="mm-hmm", barge_in_after_ms=1500)
    out = []
    for _ in range(calls):
        result = await call(url, [backchannel])
        gap = (
            result.back_after_clear_ms[0]
            if result.clears == 1 and result.back_after_clear_ms
            else None
        )
        print(f"backchannel: {result.clears} clear(s), agent back after {gap} ms")
        if gap is not None:
            out.append(gap)
    return out


def report(results: list[CallResult], stages: list[dict[str, Any]]) -> dict[str, Any]:
    missing = sum(1 for r in results for t in r.turns if t.latency_ms is None)
    greeting = [r.greeting_ms for r in results if r.greeting_ms is not None]
    return {
        "caller_voice_to_voice_ms": summary(_latencies(results)),
        # The first call says every sentence for the first time (TTS cache cold); later calls
        # hear the agent's fixed prompts from the cache, as a production node mostly does (the
        # reply quoting each call's own order number is always synthesized).
        "caller_voice_to_voice_cold_ms": summary(_latencies(results[:1])),
        "caller_voice_to_voice_warm_ms": summary(_latencies(results[1:])),
        "unanswered_turns": missing,
        # Silences inside a reply the caller heard (its audio ran dry mid-answer), per call.
        "reply_underruns": sum(r.underruns for r in results),
        "longest_gap_in_reply_ms": max((r.longest_gap_ms for r in results), default=0.0),
        "greeting_first_audio_ms": summary(greeting),
        "node_stages_ms": {
            s: summary([r[s] for r in stages if r.get(s) is not None]) for s in STAGES
        },
        # Per turn, caller-measured minus node-measured voice-to-voice: the caller's last voiced
        # frame -> the frame the VAD last called speech, plus delivery of the first agent frame.
        "outside_node_ms": summary(_outside_node(results, stages)),
    }


def _outside_node(results: list[CallResult], stages: list[dict[str, Any]]) -> list[float]:
    node = {
        (r["call_id"], r["turn_index"]): r["voice_to_voice_ms"]
        for r in stages
        if r.get("voice_to_voice_ms") is not None
    }
    out = []
    for result in results:
        for index, turn in enumerate(result.turns, start=1):
            inside = node.get((result.call_sid, index))
            if turn.latency_ms is not None and inside is not None:
                out.append(round(turn.latency_ms - inside, 1))
    return out


def print_report(out: dict[str, Any]) -> None:
    v2v = out["caller_voice_to_voice_ms"]
    print(f"\ncaller voice-to-voice: p50 {v2v['p50']} ms  p95 {v2v['p95']} ms  (n={v2v['n']})")
    for kind in ("cold", "warm"):
        part = out[f"caller_voice_to_voice_{kind}_ms"]
        print(
            f"  {kind} TTS cache:       p50 {part['p50']} ms  p95 {part['p95']} ms  (n={part['n']})"
        )
    print(
        f"gaps inside replies:   {out['reply_underruns']}, longest "
        f"{out['longest_gap_in_reply_ms']} ms"
    )
    print(f"greeting first audio:  p50 {out['greeting_first_audio_ms']['p50']} ms after start")
    barge = out["barge_in_clear_ms"]
    print(f"barge-in clear:        p50 {barge['p50']} ms after caller speech onset")
    held = out["backchannel_held_ms"]
    print(f"backchannel held:      p50 {held['p50']} ms of agent silence (n={held['n']})")
    for stage, s in out["node_stages_ms"].items():
        print(f"  node {stage:<24} p50 {s['p50']!s:>7}  p95 {s['p95']!s:>7}")
    outside = out["outside_node_ms"]
    print(f"  outside the node (caller - node) p50 {outside['p50']}  p95 {outside['p95']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--turns", type=int, default=4, choices=range(1, len(SCRIPT) + 1))
    parser.add_argument("--url", help="Use a running node instead of starting one.")
    parser.add_argument(
        "--barge-ins", type=int, default=3, help="Barge-in (and backchannel) calls to time."
    )
    parser.add_argument(
        "--same-number",
        action="store_true",
        help="Say the shipped order number every call (all replies then come from the TTS cache).",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latency.json")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="Extra PARLEY_ setting for the node, NAME=VALUE (repeatable).",
    )
    args = parser.parse_args()
    # Stopped with SIGTERM: unwind normally so the node stops and the scratch database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    extra = dict(item.split("=", 1) for item in args.env)
    started = time.time()
    if args.url:
        results = asyncio.run(place_calls(args.url, args.calls, args.turns, not args.same_number))
        barge = asyncio.run(place_barge_ins(args.url, args.barge_ins))
        held = asyncio.run(place_backchannels(args.url, args.barge_ins))
        stages: list[dict[str, Any]] = []
    else:
        with scratch_database() as database_url:
            data_dir = ROOT / ".parley" / "bench" / uuid.uuid4().hex[:8]
            data_dir.mkdir(parents=True, exist_ok=True)
            with media_node(database_url, data_dir, extra) as (url, _process):
                results = asyncio.run(
                    place_calls(url, args.calls, args.turns, not args.same_number)
                )
                barge = asyncio.run(place_barge_ins(url, args.barge_ins))
                held = asyncio.run(place_backchannels(url, args.barge_ins))
            stages = stage_rows(database_url, [r.call_sid for r in results])
    out = {
        "benchmark": "latency",
        "calls": args.calls,
        "turns_per_call": args.turns,
        "machine": machine(),
        "settings": extra,
        "unique_order_numbers": not args.same_number,
        "seconds": round(time.time() - started, 1),
        **report(results, stages),
        "barge_in_clear_ms": summary(barge),
        "backchannel_held_ms": summary(held),
    }
    print_report(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
