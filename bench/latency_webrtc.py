"""Caller-measured voice-to-voice latency over WebRTC on loopback, next to Twilio Media Streams.

Runs one media node (real models, the example agent, a scratch PostgreSQL database) and
places N calls x M turns through each transport with the same caller audio:

- ``twilio``: the Twilio simulator (mu-law 8 kHz over a WebSocket), as ``bench/latency.py``;
- ``webrtc``: an aiortc caller (Opus 48 kHz over SRTP, jitter buffer) through ``/webrtc/signal``.

Voice-to-voice is measured at the caller: its last voiced frame sent -> the first voiced agent
frame received. The node's own per-stage figures (endpoint wait, ASR, dialogue, TTS) come from the
``latency.measured`` events. Prints p50/p95 per transport and writes JSON.

    python bench/latency_webrtc.py --calls 3 --out .parley/bench/latency_webrtc.json
    python bench/latency_webrtc.py --url ws://127.0.0.1:8765   # against a running node
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from media_nodes.app import create_app  # noqa: E402
from media_nodes.server import build_server  # noqa: E402
from media_nodes.simulator.caller import Say, SimulatedCaller, load_wav  # noqa: E402
from media_nodes.simulator.webrtc_caller import WebRtcCaller, load_wav_48k  # noqa: E402
from shared.settings import load_settings  # noqa: E402

AUDIO = ROOT / "examples" / "audio"
DEFAULT_TURNS = "order_status,opening_hours,order_status"
STAGES = ("endpoint_ms", "asr_ms", "dialogue_first_text_ms", "tts_first_audio_ms")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 1) if values else None,
        "p95": percentile(values, 0.95),
    }


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A migrated database for this run on the services' PostgreSQL; dropped afterwards."""
    from shared.db import migrate

    name = f"parley_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_node(port: int, database_url: str) -> tuple[Any, threading.Thread]:
    settings = load_settings(
        data_dir=ROOT / ".parley" / "bench-node", log_level="WARNING", database_url=database_url
    )
    server = build_server("127.0.0.1", port, settings, app=create_app(settings))
    thread = threading.Thread(target=server.run, name="media-node", daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server, thread
        except httpx.HTTPError:
            pass
        if not thread.is_alive():
            break
        time.sleep(0.2)
    raise SystemExit("the media node did not become ready")


def local_node(stack: contextlib.ExitStack, admin_url: str) -> tuple[str, str]:
    """A media node started for this run on a scratch database, both let go when ``stack``
    closes; returns its ws:// base URL and the database URL."""
    database_url = stack.enter_context(scratch_database(admin_url))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server, thread = start_node(port, database_url)
    stack.callback(thread.join, 30)
    stack.callback(setattr, server, "should_exit", True)
    return f"ws://127.0.0.1:{port}", database_url


async def twilio_call(base: str, turns: list[str]) -> tuple[list[float], list[dict[str, Any]]]:
    steps = [Say(load_wav(AUDIO / f"{name}.wav"), label=name) for name in turns]
    result = await SimulatedCaller(f"{base}/twilio/stream").run(list(steps))
    return [t.latency_ms for t in result.turns if t.latency_ms is not None], []


async def webrtc_call(base: str, turns: list[str]) -> tuple[list[float], list[dict[str, Any]]]:
    caller = WebRtcCaller(f"{base}/webrtc/signal")
    try:
        await caller.connect()
        for name in turns:
            if caller.ended:
                break
            await caller.say(load_wav_48k(AUDIO / f"{name}.wav"), label=name)
        if not caller.ended:
            await caller.wait_agent_done()
            await caller.hang_up()
    finally:
        await caller.close()
    result = caller.result
    return (
        [t.latency_ms for t in result.turns if t.latency_ms is not None],
        result.of_type("latency.measured"),
    )


async def run(base: str, calls: int, turns: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {"turns_per_call": turns, "calls": calls, "transports": {}}
    for transport, place in (("twilio", twilio_call), ("webrtc", webrtc_call)):
        caller_ms: list[float] = []
        stages: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "voice_to_voice_ms")}
        for _ in range(calls):
            latencies, measured = await place(base, turns)
            caller_ms += latencies
            for event in measured:
                for stage, values in stages.items():
                    if event.get(stage) is not None:
                        values.append(float(event[stage]))
        report["transports"][transport] = {
            "caller_voice_to_voice_ms": summary(caller_ms),
            "node_stages_ms": {k: summary(v) for k, v in stages.items() if v},
            "samples": caller_ms,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="base ws:// URL of a running media node (default: start one)")
    parser.add_argument("--calls", type=int, default=3, help="calls per transport")
    parser.add_argument("--turns", default=DEFAULT_TURNS, help="caller WAVs (examples/audio)")
    parser.add_argument(
        "--admin-database-url",
        default="postgresql://postgres@127.0.0.1:54329/postgres",
        help="PostgreSQL where a scratch database is created for the started node",
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".parley/bench/latency_webrtc.json")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        base = args.url
        if base is None:
            base, _ = local_node(stack, args.admin_database_url)
        report = asyncio.run(run(base.rstrip("/"), args.calls, args.turns.split(",")))
    report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{'transport':<8} {'n':>3} {'p50 ms':>8} {'p95 ms':>8}   node stages p50 (ms)")
    for name, data in report["transports"].items():
        v2v = data["caller_voice_to_voice_ms"]
        stages = "  ".join(
            f"{k.removesuffix('_ms')}={v['p50']}" for k, v in data["node_stages_ms"].items()
        )
        print(f"{name:<8} {v2v['n']:>3} {v2v['p50']!s:>8} {v2v['p95']!s:>8}   {stages}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
