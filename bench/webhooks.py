"""Benchmark: the voice Lambda answering Twilio webhooks in-process (target: p99 <= 50 ms, well
inside Twilio's webhook timeout).

Invokes ``functions.voice.app.handler`` with signed API Gateway events against the real
PostgreSQL and Redis (``scripts/services start``): each inbound call is new (a call row is
inserted, a media node picked from Redis, a session token signed, TwiML rendered); then a status
callback for it. Run: ``.venv/bin/python bench/webhooks.py [--calls 1000]``. The helpers here
(scratch database, in-process invocation, percentiles) are shared with ``bench/analytics.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ADMIN_URL = os.environ.get(
    "PARLEY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:54329/postgres"
)
REDIS_URL = os.environ.get("PARLEY_BENCH_REDIS_URL", "redis://127.0.0.1:63799/0")
RESULTS = Path(__file__).resolve().parent / "results"
_LAMBDA_STDOUT = io.StringIO()


@dataclass
class Context:
    function_name: str = "parley-bench"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:parley-bench"
    aws_request_id: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def database(name: str, *, fresh: bool) -> str:
    """URL of a scratch database (created and migrated when missing or ``fresh``)."""
    from shared.db import migrate

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    return url


def configure(url: str, prefix: str) -> Any:
    """Point the functions' runtime at the bench database and a private Redis prefix."""
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    from functions.common.config import FunctionSettings
    from functions.common.runtime import configure as configure_runtime
    from functions.samples import SAMPLE_ACCOUNT_SID, SAMPLE_AUTH_TOKEN

    settings = FunctionSettings(
        database_url=url,
        redis_url=REDIS_URL,
        twilio_auth_token=SAMPLE_AUTH_TOKEN,
        twilio_account_sid=SAMPLE_ACCOUNT_SID,
        log_level="WARNING",
    )
    asyncio.set_event_loop(asyncio.new_event_loop())
    return configure_runtime(settings, cache_prefix=prefix)


def timed(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], event: dict[str, Any]
) -> tuple[float, int, str]:
    """Milliseconds one Lambda invocation took, its status code and body."""
    context = Context(aws_request_id=str(uuid.uuid4()))
    started = time.perf_counter()
    with contextlib.redirect_stdout(_LAMBDA_STDOUT):  # EMF metrics lines, as CloudWatch gets them
        result = handler(event, context)
    _LAMBDA_STDOUT.seek(0)
    _LAMBDA_STDOUT.truncate()
    return (
        (time.perf_counter() - started) * 1000,
        int(result["statusCode"]),
        result.get("body") or "",
    )


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p95": round(q[94], 2),
        "p99": round(q[98], 2),
        "max": round(ordered[-1], 2),
    }


def machine() -> str:
    cpus = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), ""
            )
    except OSError:
        pass
    load = os.getloadavg()[0]
    return (
        f"{platform.machine()} {model} ({cpus} cores), {mem_kb // 1024 // 1024} GiB RAM, "
        f"Python {platform.python_version()}, load average {load:.1f} at the start"
    )


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = [f"{'case':44} {'n':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"]
    for name, p in rows.items():
        cells = " ".join(f"{p[k]:>8.2f}" for k in ("p50", "p95", "p99", "max"))
        lines.append(f"{name:44} {p['n']:>5} {cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="Inbound calls to answer.")
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    host = machine()
    url = database("parley_bench_webhooks", fresh=True)
    prefix = f"parley-bench:{uuid.uuid4().hex[:8]}:"
    runtime = configure(url, prefix)

    from functions.samples import load_sample, twilio_event
    from functions.voice.app import handler
    from shared.cache import NodeInfo

    number = "+15559870000"
    definition = json.loads(load_sample("admin.post-v1-agents.json")["body"])["definition"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ('bench', 'Bench')")
        conn.execute(
            "INSERT INTO agents (tenant_id, agent_id, name, active_version) "
            "VALUES ('bench', 'acme-shop', 'Acme', 1)"
        )
        conn.execute(
            "INSERT INTO agent_versions (tenant_id, agent_id, version, definition) "
            "VALUES ('bench', 'acme-shop', 1, %s)",
            (json.dumps(definition),),
        )
        conn.execute(
            "INSERT INTO phone_numbers (number, tenant_id, agent_id) "
            "VALUES (%s, 'bench', 'acme-shop')",
            (number,),
        )
    loop = asyncio.get_event_loop()

    async def heartbeats() -> None:
        for i in range(4):
            node = NodeInfo(f"node-{i}", f"wss://media-{i}.example.com", 100, active_calls=i)
            await runtime.registry().heartbeat(node)

    loop.run_until_complete(heartbeats())

    def form(sid: str, status: str) -> dict[str, str]:
        return {
            "AccountSid": "AC" + "0" * 32,
            "CallSid": sid,
            "CallStatus": status,
            "Direction": "inbound",
            "From": "+15551230001",
            "To": number,
        }

    voice: list[float] = []
    status: list[float] = []
    for i in range(args.warmup + args.calls):
        if i % 100 == 0:  # media nodes heartbeat every few seconds; their entries expire in 15 s
            loop.run_until_complete(heartbeats())
        sid = "CA" + uuid.uuid4().hex
        ms, code, body = timed(handler, twilio_event("/twilio/voice", form(sid, "ringing")))
        assert code == 200 and "<Stream" in body, body
        ms2, code2, _ = timed(handler, twilio_event("/twilio/status", form(sid, "in-progress")))
        assert code2 == 204, code2
        if i >= args.warmup:
            voice.append(ms)
            status.append(ms2)
    loop.run_until_complete(runtime.close())
    rows = {
        "POST /twilio/voice (new call, stream TwiML)": percentiles(voice),
        "POST /twilio/status (in-progress)": percentiles(status),
    }
    print(f"machine: {host}")
    print(table(rows))
    path = save("webhooks", {"machine": host, "results_ms": rows})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
