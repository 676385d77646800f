"""How many concurrent calls one media node carries, and what a call costs in memory.

Starts one node in its own process (real models, the example agent, a scratch database) and
ramps concurrent simulated calls (default 1, 2, 4, 6, 8, 10, 12, ...). Each call says its own
random order number, so the agent's confirmation is synthesized live, not served from the cache.
A level passes when every turn was answered, the caller-measured voice-to-voice p95 stays under
``--p95-limit-ms`` (1.2 s) and no caller heard an underrun (the agent's audio running dry
mid-answer). The maximum is the last passing level.

Memory per call = (node RSS at the level's peak - warm RSS) / calls, where warm RSS is taken
after one unmeasured warm-up call. The idle RSS (2 s after the node is ready) is no baseline: it
swung by 100 MB between runs of the same commit and fell by 80-200 MB after the first call
(start-up transients returned to the system, against one-time first-use costs paid), and
(peak - idle) / calls divided that swing among the level's calls. A level's peak also holds
transient inference buffers (a turn being transcribed, a reply synthesized) that do not scale with
the calls, so what one more call costs is the slope between levels: MB per added call =
(peak - the previous level's peak) / (calls - its calls). Compare two commits on that, over
repeated runs.
``--soak-minutes`` then runs ``--soak-calls`` calls in rounds and reports RSS growth.

    .venv/bin/python bench/capacity.py
    .venv/bin/python bench/capacity.py --levels 1,2,4 --soak-minutes 30 --soak-calls 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from latency import (  # noqa: E402
    call_script,
    machine,
    media_node,
    percentile,
    scratch_database,
)

from media_nodes.simulator.caller import CallResult, call  # noqa: E402

TURNS = 3  # order status, a fresh order number (its confirmation is synthesized), yes


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_level(url: str, calls: int, pid: int, stagger_s: float) -> dict[str, Any]:
    scripts = [call_script(TURNS, unique=True) for _ in range(calls)]
    peak = rss_mb(pid)
    running = True

    async def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.25)

    async def one(index: int) -> CallResult | BaseException:
        await asyncio.sleep(index * stagger_s + random.uniform(0, stagger_s / 2))
        try:
            return await call(url, scripts[index])
        except Exception as exc:  # a refused or broken call counts against the level
            return exc

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    outcomes = await asyncio.gather(*(one(i) for i in range(calls)))
    running = False
    await sampler
    results = [o for o in outcomes if isinstance(o, CallResult)]
    latencies = [t.latency_ms for r in results for t in r.turns if t.latency_ms is not None]
    unanswered = sum(1 for r in results for t in r.turns if t.latency_ms is None)
    return {
        "calls": calls,
        "failed_calls": len(outcomes) - len(results),
        "turns": len(latencies) + unanswered,
        "unanswered_turns": unanswered,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "underruns": sum(r.underruns for r in results),
        "peak_rss_mb": round(peak, 1),
        "seconds": round(time.monotonic() - started, 1),
    }


async def soak(url: str, pid: int, minutes: float, calls: int) -> dict[str, Any]:
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + minutes * 60
    started = time.monotonic()
    while time.monotonic() < deadline:
        await run_level(url, calls, pid, stagger_s=1.0)
        samples.append((round(time.monotonic() - started), round(rss_mb(pid), 1)))
        print(f"  soak {samples[-1][0]:>5} s: RSS {samples[-1][1]} MB")
    # The first round fills caches (TTS sentences, allocator arenas): growth is measured after it.
    base = samples[0][1] if samples else 0.0
    last = samples[-1][1] if samples else 0.0
    return {
        "minutes": minutes,
        "calls_per_round": calls,
        "rss_samples": samples,
        "growth_pct": round((last - base) / base * 100, 2) if base else None,
    }


async def ramp(args: argparse.Namespace, url: str, pid: int) -> dict[str, Any]:
    await asyncio.sleep(2)
    idle = rss_mb(pid)
    await run_level(url, 1, pid, args.stagger_s)  # the one-time costs of a node's first call
    await asyncio.sleep(2)
    warm = rss_mb(pid)
    print(f"idle RSS {idle:.0f} MB (models loaded), {warm:.0f} MB after a warm-up call")
    levels = []
    best = 0
    for calls in args.levels:
        level = await run_level(url, calls, pid, args.stagger_s)
        passed = (
            level["failed_calls"] == 0
            and level["unanswered_turns"] == 0
            and level["underruns"] == 0
            and (level["p95_ms"] or 0) <= args.p95_limit_ms
        )
        level["passed"] = passed
        level["mb_per_call"] = round(max(0.0, level["peak_rss_mb"] - warm) / calls, 1)
        if levels:
            before = levels[-1]
            added = (level["peak_rss_mb"] - before["peak_rss_mb"]) / (calls - before["calls"])
            level["mb_per_added_call"] = round(added, 1)
        levels.append(level)
        print(
            f"{calls:>3} calls: p50 {level['p50_ms']} ms, p95 {level['p95_ms']} ms, "
            f"underruns {level['underruns']}, unanswered {level['unanswered_turns']}, "
            f"{level['mb_per_call']} MB/call, {level.get('mb_per_added_call', '-')} MB/added call"
            f" -> {'ok' if passed else 'FAIL'}"
        )
        if not passed:
            break
        best = calls
        await asyncio.sleep(1)
    out: dict[str, Any] = {
        "idle_rss_mb": round(idle, 1),
        "warm_rss_mb": round(warm, 1),
        "levels": levels,
        "max_calls": best,
    }
    if args.soak_minutes:
        out["soak"] = await soak(url, pid, args.soak_minutes, args.soak_calls)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--levels",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 2, 4, 6, 8, 10, 12, 16],
    )
    parser.add_argument("--p95-limit-ms", type=float, default=1200)
    parser.add_argument("--stagger-s", type=float, default=1.0, help="Between call starts.")
    parser.add_argument("--soak-minutes", type=float, default=0)
    parser.add_argument("--soak-calls", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "capacity.json")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the node.")
    args = parser.parse_args()
    # Stopped with SIGTERM: unwind normally so the node stops and the scratch database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    extra = {"PARLEY_MEDIA_MAX_CALLS": "200", **dict(e.split("=", 1) for e in args.env)}
    started = time.time()
    with scratch_database() as database_url:
        data_dir = ROOT / ".parley" / "bench" / uuid.uuid4().hex[:8]
        data_dir.mkdir(parents=True, exist_ok=True)
        with media_node(database_url, data_dir, extra) as (url, process):
            result = asyncio.run(ramp(args, url, process.pid))
    out = {
        "benchmark": "capacity",
        "machine": machine(),
        "settings": extra,
        "p95_limit_ms": args.p95_limit_ms,
        "seconds": round(time.time() - started, 1),
        **result,
    }
    print(f"\nmax concurrent calls within p95 <= {args.p95_limit_ms:.0f} ms: {out['max_calls']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
