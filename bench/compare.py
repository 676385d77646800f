"""Parley against a peer (or against itself with other settings), calls alternating in one run.

On a shared 2-core machine one run's absolute figures move with whatever else runs; the ratio of
two targets called in turn, under the same load, is what can be compared across runs. Each round
places one call to every target with the same caller audio (the Twilio simulator, a fresh
Piper-spoken order number per round), then one barge-in call to each. Prints per-target medians
(caller-measured voice-to-voice, barge-in ``clear``, greeting) and each target's ratio to the
first, and writes JSON.

Targets: ``parley`` (a node in its own process, as bench/latency.py starts it),
``parley:NAME=VALUE,...`` (with PARLEY_ settings), ``pipecat`` (the Pipecat 1.14 bot in
../shared/peers/pipecat, same models, its venv built by its setup.sh).

    .venv/bin/python bench/compare.py --rounds 4 parley pipecat
    .venv/bin/python bench/compare.py parley parley:PARLEY_SPECULATIVE_REPLY=false
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from latency import (  # noqa: E402
    AUDIO,
    call_script,
    free_port,
    machine,
    media_node,
    scratch_database,
    summary,
)

from media_nodes.simulator.caller import Say, call, load_wav  # noqa: E402

PEER_DIR = ROOT.parent / "shared" / "peers" / "pipecat"
PEER_VENV = Path(os.environ.get("PEER_VENV", "/tmp/peer-pipecat"))


@dataclass
class Target:
    name: str
    url: str = ""
    turns_ms: list[float] = field(default_factory=list)
    by_position: dict[int, list[float]] = field(default_factory=dict)  # 1st, 2nd... turn of calls
    clears_ms: list[float] = field(default_factory=list)
    greetings_ms: list[float] = field(default_factory=list)
    unanswered: int = 0


@contextlib.contextmanager
def pipecat_bot(log_dir: Path) -> Iterator[str]:
    if not (PEER_DIR / "bot.py").exists():
        raise SystemExit(f"no Pipecat peer at {PEER_DIR}")
    print(f"pipecat: building its venv at {PEER_VENV} if needed (~1 min the first time)")
    subprocess.run(
        ["bash", str(PEER_DIR / "setup.sh")],
        env={**os.environ, "PEER_VENV": str(PEER_VENV)},
        check=True,
    )
    port = free_port()
    log = (log_dir / "pipecat.log").open("wb")
    process = subprocess.Popen(
        [str(PEER_VENV / "bin" / "python"), str(PEER_DIR / "bot.py"), "--port", str(port)],
        cwd=PEER_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the Pipecat bot exited: see {log_dir / 'pipecat.log'}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the Pipecat bot did not start listening within 180 s")
            time.sleep(0.3)
        yield f"ws://127.0.0.1:{port}/twilio/stream"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def parley_env(spec: str) -> dict[str, str]:
    """``parley:A=1,B=2`` -> {"A": "1", "B": "2"}; names must be PARLEY_ settings."""
    _, _, settings = spec.partition(":")
    env: dict[str, str] = {}
    for item in filter(None, settings.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("PARLEY_"):
            raise SystemExit(f"bad setting {item!r} in {spec!r}: expected PARLEY_NAME=VALUE")
        env[name] = value
    return env


async def one_round(targets: list[Target], turns: int, barge_in: Say) -> None:
    script = call_script(turns, unique=True)  # the same audio for every target this round
    for target in targets:
        result = await call(target.url, script)
        latencies = [t.latency_ms for t in result.turns]
        target.turns_ms += [ms for ms in latencies if ms is not None]
        for position, ms in enumerate(latencies, start=1):
            if ms is not None:
                target.by_position.setdefault(position, []).append(ms)
        target.unanswered += sum(1 for ms in latencies if ms is None)
        if result.greeting_ms is not None:
            target.greetings_ms.append(result.greeting_ms)
        print(f"  {target.name:<40} greeting {result.greeting_ms} ms, turns {latencies}")
    for target in targets:
        result = await call(target.url, [barge_in])
        clear = result.turns[0].barge_in_clear_ms
        if clear is not None:
            target.clears_ms.append(clear)
        print(f"  {target.name:<40} barge-in clear {clear} ms")


def report(targets: list[Target]) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "targets": {}}
    base = targets[0]
    for target in targets:
        row = {
            "voice_to_voice_ms": summary(target.turns_ms),
            # Parley's script: 1 = a cached prompt, 2 = a read-back of a new number (synthesized),
            # 3 = a confirmation that runs an HTTP lookup (never prepared ahead).
            "voice_to_voice_by_turn_ms": {
                str(p): summary(ms) for p, ms in sorted(target.by_position.items())
            },
            "barge_in_clear_ms": summary(target.clears_ms),
            "greeting_ms": summary(target.greetings_ms),
            "unanswered_turns": target.unanswered,
        }
        for key in ("voice_to_voice_ms", "barge_in_clear_ms", "greeting_ms"):
            mine, theirs = row[key]["p50"], out["targets"].get(base.name, row)[key]["p50"]
            row[f"{key}_p50_vs_{base.name}"] = round(mine / theirs, 2) if mine and theirs else None
        out["targets"][target.name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="+", help="parley, parley:PARLEY_X=V,..., pipecat")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--turns", type=int, default=3, choices=range(1, 5))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "compare.json")
    args = parser.parse_args()
    if len(set(args.targets)) != len(args.targets):
        raise SystemExit("each target once, please")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log_dir = ROOT / ".parley" / "bench" / uuid.uuid4().hex[:8]
    log_dir.mkdir(parents=True, exist_ok=True)
    targets = [Target(name) for name in args.targets]
    barge_in = Say(load_wav(AUDIO / "interrupt.wav"), label="interrupt", barge_in_after_ms=1500)
    with contextlib.ExitStack() as stack:
        for target in targets:
            if target.name == "pipecat":
                target.url = stack.enter_context(pipecat_bot(log_dir))
            elif target.name == "parley" or target.name.startswith("parley:"):
                database_url = stack.enter_context(scratch_database())
                data_dir = log_dir / f"node-{len(target.name)}-{uuid.uuid4().hex[:4]}"
                data_dir.mkdir()
                node = media_node(database_url, data_dir, parley_env(target.name))
                target.url, _ = stack.enter_context(node)
            else:
                raise SystemExit(f"unknown target {target.name!r}")
            print(f"{target.name}: ready at {target.url}")
        for index in range(args.rounds):
            print(f"round {index + 1}/{args.rounds}")
            asyncio.run(one_round(targets, args.turns, barge_in))
    out = report(targets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    base = targets[0].name
    print(f"\nload average {out['machine']['load_avg_1m']} on {out['machine']['cpus']} CPUs")
    for name, row in out["targets"].items():
        v2v, clear, greet = row["voice_to_voice_ms"], row["barge_in_clear_ms"], row["greeting_ms"]
        print(
            f"{name:<40} v2v p50 {v2v['p50']} p95 {v2v['p95']} (n={v2v['n']}, "
            f"{row['unanswered_turns']} unanswered)  clear p50 {clear['p50']}  "
            f"greeting p50 {greet['p50']}  |  v2v x{row[f'voice_to_voice_ms_p50_vs_{base}']} "
            f"of {base}"
        )
        by_turn = row["voice_to_voice_by_turn_ms"]
        print("    by turn: " + ", ".join(f"{p}: p50 {s['p50']}" for p, s in by_turn.items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
