"""Dialogue benchmark: time to decide a turn without the LLM, and intent accuracy.

    .venv/bin/python bench/dialogue.py [--turns 300] [--json bench/results/dialogue.json]

Plays the example agent's conversations turn by turn (intent turns, slot turns, knowledge
answers) and reports p50/p95 of the full handle() time per turn kind, plus the local classifier's
accuracy on the held-out paraphrases (target: p95 <= 20 ms, accuracy >= 90 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from media_nodes.dialogue.evaluation import intent_accuracy, load_paraphrases  # noqa: E402
from media_nodes.dialogue.factory import AgentDialogueFactory  # noqa: E402
from media_nodes.dialogue.protocol import DtmfInput, UserTurn  # noqa: E402
from shared.knowledge.store import KnowledgeBase  # noqa: E402
from shared.settings import load_settings  # noqa: E402

CONVERSATION: list[tuple[str, UserTurn | DtmfInput]] = [
    ("intent", UserTurn("I'd like to check on my order")),
    ("slot", UserTurn("it's four five six seven")),
    ("slot", UserTurn("no it's 4 5 6 8")),
    ("intent", UserTurn("can you repeat that")),
    ("intent", UserTurn("actually I have a billing question")),
    ("answer", UserTurn("how long does a refund take?")),
    ("intent", UserTurn("which payment methods do you accept")),
    ("intent", UserTurn("no that's all thanks")),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(turns: int) -> dict[str, object]:
    settings = load_settings(agents_dir=ROOT / "examples" / "agents", llm_base_url="")
    factory = AgentDialogueFactory(settings, knowledge=KnowledgeBase(":memory:"))
    started = time.perf_counter()
    runtime = await factory.runtime("bench", "acme-shop")
    compile_s = time.perf_counter() - started
    timings: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    played = 0
    while played < turns:
        session = await factory.new_session(
            tenant_id="bench", agent_id="acme-shop", call_id=f"b{played}", variables={}
        )
        async for _ in session.greeting():
            pass
        for turn_index, (kind, user_input) in enumerate(CONVERSATION, start=1):
            begin, begin_cpu = time.perf_counter(), time.process_time()
            async for _ in session.handle(user_input, turn_index=turn_index):
                pass
            timings.setdefault(kind, []).append((time.perf_counter() - begin) * 1000)
            # CPU time of the whole process (all threads): the turn's own cost, which a busy
            # machine does not inflate the way it inflates wall time.
            cpu.setdefault(kind, []).append((time.process_time() - begin_cpu) * 1000)
            played += 1
    accuracy = await intent_accuracy(
        runtime, load_paraphrases(ROOT / "examples/agents/acme-shop/tests/paraphrases.yaml")
    )
    await factory.aclose()
    all_turns = [t for values in timings.values() for t in values]
    all_cpu = [t for values in cpu.values() for t in values]
    report = {
        "agent_compile_s": round(compile_s, 3),
        "turns": len(all_turns),
        "turn_ms": {
            kind: {
                "n": len(values),
                "p50": round(statistics.median(values), 2),
                "p95": round(percentile(values, 0.95), 2),
            }
            for kind, values in {**timings, "all": all_turns}.items()
        },
        "turn_cpu_ms": {
            kind: {
                "p50": round(statistics.median(values), 2),
                "p95": round(percentile(values, 0.95), 2),
            }
            for kind, values in {**cpu, "all": all_cpu}.items()
        },
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "intent_accuracy": round(accuracy.accuracy, 4),
        "intent_cases": accuracy.total,
        "intent_misses": [[m.state, m.expected, m.text, m.got] for m in accuracy.misses],
    }
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(main(args.turns))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
