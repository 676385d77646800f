"""End-to-end event pipeline benchmark: media-node producer (DurableBus: spool + Kafka) ->
Kafka -> ``parley events consume`` (a separate process) -> committed PostgreSQL rows.

Reports events/s from the first publish to the last row, and the produce -> row delay
(``call_events.received_at - occurred_at``) percentiles, as medians over ``--runs`` runs.
Needs the servers of ``scripts/services start``. Usage:

    python bench/events.py [--events 50000] [--calls 100] [--rate 0] [--runs 3] [--producer durable]

``--rate 0`` publishes as fast as the producer can (throughput); ``--rate N`` paces the calls to N
events/s in total (the delay a steady load sees).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.bus.durable import DurableBus  # noqa: E402
from shared.bus.kafka import KafkaBus  # noqa: E402
from shared.db import create_pool, migrate  # noqa: E402
from shared.events import (  # noqa: E402
    CallEnded,
    CallStarted,
    Event,
    IntentDetected,
    LatencyMeasured,
    TurnAgent,
    TurnUser,
)

PG = os.environ.get("PARLEY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:54329/postgres")
KAFKA = os.environ.get("PARLEY_BENCH_KAFKA_BOOTSTRAP", "127.0.0.1:19092")


def payload(call_seq: int, last: bool) -> Any:
    turn = call_seq // 4
    if call_seq == 0:
        return CallStarted(agent_id="acme-shop", from_number="+15550001", to_number="+15550002")
    if last:
        return CallEnded(reason="hangup", duration_ms=60_000)
    kind = call_seq % 4
    if kind == 1:
        return TurnAgent(
            turn_index=turn,
            text="Sure, let me check that order for you.",
            start_ms=call_seq * 900,
            end_ms=call_seq * 900 + 800,
            state="lookup",
        )
    if kind == 2:
        return TurnUser(
            turn_index=turn,
            text="I want to know where my order is",
            start_ms=call_seq * 900,
            end_ms=call_seq * 900 + 700,
            confidence=0.92,
        )
    if kind == 3:
        return IntentDetected(turn_index=turn, intent="order_status", confidence=0.91)
    return LatencyMeasured(turn_index=turn, asr_ms=120.0, voice_to_voice_ms=480.0)


async def one_run(args: argparse.Namespace, run: int) -> dict[str, float]:
    name = f"parley_bench_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(PG, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = conninfo_to_dict(PG)
    url = f"postgresql://{info.get('user', 'postgres')}@{info['host']}:{info['port']}/{name}"
    prefix = f"parley-bench-{uuid.uuid4().hex[:8]}"
    consumer: asyncio.subprocess.Process | None = None
    spool = Path(tempfile.mkdtemp(prefix="parley-bench-spool-"))
    try:
        migrate(url)
        kafka = KafkaBus(KAFKA, topic_prefix=prefix, partitions=6)
        await kafka.ensure_topics()
        env = {
            **os.environ,
            "PARLEY_KAFKA_BOOTSTRAP": KAFKA,
            "PARLEY_KAFKA_TOPIC_PREFIX": prefix,
            "PARLEY_DATABASE_URL": url,
            "PARLEY_LOG_LEVEL": "WARNING",
        }
        consumer = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                "-m",
                "functions.consumer.cli",
                "consume",
                "--batch-size",
                str(args.batch_size),
                "--lanes",
                str(args.lanes),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        pool = await create_pool(url, max_size=2)
        bus: Any = DurableBus(kafka, spool) if args.producer == "durable" else kafka
        await bus.start()
        # Warm up: the consumer has joined its group once a first event lands.
        warm = Event(tenant_id="bench", call_id="warm-up", seq=0, payload=payload(0, False))
        await bus.publish(warm)
        await wait_rows(pool, 1, timeout_s=120)

        per_call = args.events // args.calls
        pause = args.calls / args.rate if args.rate else 0.0

        async def call(index: int) -> None:
            call_id = f"bench-{run}-{index}"
            rng = random.Random(index)
            if pause:
                await asyncio.sleep(rng.random() * pause)
            for seq in range(per_call):
                event = Event(
                    tenant_id="bench",
                    call_id=call_id,
                    seq=seq,
                    payload=payload(seq, seq == per_call - 1),
                )
                await bus.publish(event)
                await asyncio.sleep(pause)

        cpu_before = cpu_times(consumer.pid, await pg_backends(pool, name))
        started = time.time()
        await asyncio.gather(*(call(i) for i in range(args.calls)))
        produced = time.time()
        total = per_call * args.calls + 1
        await wait_rows(pool, total, timeout_s=600)
        cpu_after = cpu_times(consumer.pid, await pg_backends(pool, name))
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM received_at - occurred_at) * 1000 AS ms"
                " FROM call_events WHERE tenant_id = 'bench' AND call_id <> 'warm-up'"
            )
            delays = sorted(float(r["ms"]) for r in await cur.fetchall())
            cur = await conn.execute(
                "SELECT extract(epoch FROM max(received_at)) AS t FROM call_events"
            )
            finished = float((await cur.fetchone())["t"])  # the last batch's transaction
        await bus.stop()
        await pool.close()
        q = statistics.quantiles(delays, n=100)
        n = total - 1
        cpu = {k: (cpu_after[k] - cpu_before.get(k, 0.0)) / n * 1e6 for k in cpu_after}
        cpu["postgres"] = sum(cpu.pop(k) for k in list(cpu) if k.startswith("pg:"))
        result = {
            "events_per_s": n / (finished - started),
            "publish_per_s": n / (produced - started),
            "p50_ms": q[49],
            "p95_ms": q[94],
            "p99_ms": q[98],
            **{f"cpu_us_{k}": v for k, v in cpu.items()},
            "cpu_us_total": sum(cpu.values()),
            "ceiling_per_s_2_idle_cores": 2e6 / sum(cpu.values()),
        }
        print(
            f"run {run + 1}: " + ", ".join(f"{k} {v:,.1f}" for k, v in result.items()), flush=True
        )
        return result
    finally:
        if consumer is not None:
            consumer.send_signal(signal.SIGTERM)
            await asyncio.wait_for(consumer.wait(), 30)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await asyncio.to_thread(shutil.rmtree, spool, True)


async def wait_rows(pool: Any, n: int, timeout_s: float) -> None:
    # Polled gently: the end time is read from the rows, not from this loop.
    async with asyncio.timeout(timeout_s):
        while True:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT count(*) AS n FROM call_events")
                if (await cur.fetchone())["n"] >= n:
                    return
            await asyncio.sleep(0.25)


async def pg_backends(pool: Any, database: str) -> list[int]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))
        return [int(r["pid"]) for r in await cur.fetchall()]


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times(consumer_pid: int, backends: list[int]) -> dict[str, float]:
    """CPU seconds so far of each part. Kafka is the shared broker: other traffic counts too."""
    kafka_pid = ROOT / ".parley/services/kafka/kafka.pid"
    kafka = int(kafka_pid.read_text()) if kafka_pid.exists() else 0
    # Backends by pid: the consumer's pool may open connections during the run.
    return {
        "producer": time.process_time(),
        "consumer": _proc_cpu(consumer_pid),
        **{f"pg:{p}": _proc_cpu(p) for p in backends},
        "kafka": _proc_cpu(kafka) if kafka else 0.0,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {cpu}, {memory_gib:.0f} GiB, Python {platform.python_version()}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0, help="events/s in total (0: flat out)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=2, help="consumer's concurrent transactions")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--producer", choices=["durable", "kafka"], default="durable")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(
        f"{args.events:,} events from {args.calls} calls, rate {args.rate or 'max'}, "
        f"producer {args.producer}, consumer batch {args.batch_size}, lanes {args.lanes}"
    )
    load_start = os.getloadavg()[0]
    results = [await one_run(args, run) for run in range(args.runs)]
    median = {k: round(statistics.median(r[k] for r in results), 1) for k in results[0]}
    print("median: " + ", ".join(f"{k} {v:,.1f}" for k, v in median.items()))
    if args.out:
        report = {
            "machine": machine(),
            "load_average_start_end": [round(load_start, 1), round(os.getloadavg()[0], 1)],
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "goal_events_per_s": 5000,
            "median": median,
            "runs": [{k: round(v, 1) for k, v in r.items()} for r in results],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
