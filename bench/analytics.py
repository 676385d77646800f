"""Benchmark: the analytics Lambda over 1,000,000 generated calls.

Targets: filtered list queries p95 <= 50 ms, summaries over 90 days and aggregates p95 <= 200 ms
(each aggregate case says whether its percentiles came from the rollup's histograms, and the same
questions are asked of the calls rows for comparison; no target). The calls are
generated server-side with ``generate_series`` (5 tenants, the measured one holding 60% of the
calls over a year; 3 latency turns per call; transcripts for the last 30 days), the rollups are
rebuilt once, then live-looking updates leave pending deltas as production would. Every request
goes through ``functions.analytics.app.handler`` with an API Gateway event (auth included).

Run: ``.venv/bin/python bench/analytics.py [--calls 1000000] [--runs 100] [--reuse] [--no-export]``
(``--reuse`` keeps the generated database of an earlier run; ``--no-export`` skips the export).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhooks import configure, database, machine, percentiles, save, table, timed

DB_NAME = "parley_bench_analytics"
TENANT = "bench-0"
DISPOSITIONS = [
    "resolved",
    "escalated_to_human",
    "callback_requested",
    "caller_hung_up",
    "no_input",
    "failed",
]
INTENTS = ["order_status", "refund", "store_hours", "speak_to_human"]
PHRASES = [
    "where is my order it was supposed to arrive yesterday",
    "I want a refund for the damaged parcel",
    "what time do you open on sunday",
    "can I speak to a person please",
    "my package arrived broken and I need a replacement",
    "please cancel my subscription",
]

GENERATE = """
SET session_replication_role = replica;  -- bulk load: the rollups are rebuilt once at the end
SELECT setseed(0.42);
INSERT INTO tenants (tenant_id, name)
    SELECT 'bench-' || i, 'Bench ' || i FROM generate_series(0, 4) i;
INSERT INTO calls (call_id, tenant_id, agent_id, agent_version, direction, twilio_call_sid,
                   from_number, to_number, status, status_rank, started_at, answered_at, ended_at,
                   duration_ms, end_reason, disposition, summary, intents, node_id, last_seq,
                   voice_to_voice_p50_ms, asr_audio_ms, tts_chars, llm_tokens)
SELECT 'call-' || lpad(g::text, 8, '0'),
       CASE WHEN g %% 10 < 6 THEN 'bench-0' ELSE 'bench-' || (1 + g %% 4) END,
       'agent-' || (g %% 5), 1,
       CASE WHEN g %% 7 = 0 THEN 'outbound-api' ELSE 'inbound' END,
       'CA' || md5(g::text),
       '+1555' || lpad(((g::bigint * 7919) %% 200000)::text, 7, '0'),
       '+1800555' || lpad((g %% 20)::text, 4, '0'),
       s.status, CASE WHEN s.status = 'in-progress' THEN 2 ELSE 3 END,
       s.started, s.started + interval '3 seconds', s.started + s.duration * interval '1 ms',
       s.duration, 'hangup', s.disposition, 'Generated call ' || g, s.intents, 'node-1', 9,
       650 + random() * 700, s.duration / 3, s.duration / 60, s.duration / 50
FROM generate_series(1, %(calls)s) g,
LATERAL (SELECT
    now() - random() * interval '365 days' AS started,
    (20000 + random() * 400000)::int AS duration,
    CASE WHEN random() < 0.97 THEN 'completed' WHEN random() < 0.5 THEN 'no-answer'
         ELSE 'busy' END AS status,
    (ARRAY['resolved','resolved','resolved','resolved','resolved','escalated_to_human',
           'escalated_to_human','callback_requested','caller_hung_up','caller_hung_up',
           'no_input','failed'])[1 + floor(random() * 12)::int] AS disposition,
    CASE floor(random() * 6)::int WHEN 0 THEN ARRAY[]::text[] WHEN 1 THEN ARRAY['order_status']
         WHEN 2 THEN ARRAY['refund'] WHEN 3 THEN ARRAY['order_status', 'refund']
         WHEN 4 THEN ARRAY['store_hours'] ELSE ARRAY['speak_to_human'] END AS intents,
    g AS dependency) s;
INSERT INTO call_latency (call_id, turn_index, endpoint_ms, asr_ms, dialogue_first_text_ms,
                          tts_first_audio_ms, voice_to_voice_ms)
SELECT c.call_id, t, 400, 150 + random() * 200, 80 + random() * 300, 60 + random() * 120,
       650 + random() * 700 + CASE WHEN c.agent_id = 'agent-4' THEN 300 ELSE 0 END
FROM calls c, generate_series(0, 2) t WHERE c.status = 'completed';
INSERT INTO call_turns (call_id, speaker, turn_index, text, start_ms, end_ms, source)
SELECT c.call_id, 'caller', t, (%(phrases)s::text[])[1 + floor(random() * 6)::int],
       t * 8000, t * 8000 + 2500, 'speech'
FROM calls c, generate_series(0, 1) t
WHERE c.tenant_id = 'bench-0' AND c.started_at > now() - interval '30 days';
SET session_replication_role = DEFAULT;
UPDATE calls SET transcript = parley_call_transcript(call_id)
    WHERE call_id IN (SELECT DISTINCT call_id FROM call_turns);
SELECT parley_rebuild_rollups();
"""


def generate(url: str, calls: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        for statement in filter(str.strip, GENERATE.split(";\n")):
            conn.execute(statement, {"calls": calls, "phrases": PHRASES})
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def live_traffic(url: str, updates: int) -> int:
    """Change some calls the way the projection does, leaving rollup deltas pending."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """UPDATE calls SET disposition = 'resolved', intents = intents || ARRAY['refund']
               WHERE call_id IN (SELECT call_id FROM calls WHERE tenant_id = %s
                                 ORDER BY started_at DESC LIMIT %s)""",
            (TENANT, updates),
        )
        row = conn.execute("SELECT count(*) FROM call_rollup_deltas").fetchone()
        return int(row[0]) if row else 0


def make_key(url: str) -> str:
    from functions.common.auth import generate_key, hash_key

    key = generate_key()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO api_keys (key_id, tenant_id, key_hash, scopes) VALUES (%s, %s, %s, %s)",
            (key.key_id, TENANT, hash_key(key.secret), ["read"]),
        )
    return key.secret


def export_rates(key: str, month_ago: str) -> dict[str, dict[str, float]]:
    """GET /v1/calls/export streamed from the local server on a real port (the way a client
    reads it), counting rows as they arrive."""
    import threading

    import httpx
    import uvicorn

    from functions.local import create_local_app

    server = uvicorn.Server(
        uvicorn.Config(create_local_app(), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    cases = {
        "export: last 30 days with transcripts, CSV": ({"started_after": month_ago}, "text/csv"),
        "export: last 30 days with transcripts, JSON lines": (
            {"started_after": month_ago},
            "application/x-ndjson",
        ),
        "export: the whole tenant, CSV": ({}, "text/csv"),
    }
    out: dict[str, dict[str, float]] = {}
    try:
        for name, (query, accept) in cases.items():
            started = time.perf_counter()
            size = newlines = 0
            with httpx.stream(
                "GET",
                f"http://127.0.0.1:{port}/v1/calls/export",
                params=query,
                headers={"Authorization": f"Bearer {key}", "Accept": accept},
                timeout=600,
            ) as reply:
                assert reply.status_code == 200, reply.read()[:300]
                for chunk in reply.iter_bytes():
                    size += len(chunk)
                    newlines += chunk.count(b"\n")
            seconds = time.perf_counter() - started
            # CSV: a header line, and transcripts hold newlines inside quoted cells.
            rows = newlines if accept != "text/csv" else _csv_rows(key, port, query)
            out[name] = {
                "rows": rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(rows / seconds),
                "mb_per_s": round(size / seconds / 1e6, 1),
            }
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return out


def _csv_rows(key: str, port: int, query: dict[str, str]) -> int:
    """How many calls the same filters match (the aggregate's total)."""
    import httpx

    reply = httpx.get(
        f"http://127.0.0.1:{port}/v1/calls/aggregate",
        params=query,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    return int(reply.json()["total_calls"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100, help="Requests per case.")
    parser.add_argument("--reuse", action="store_true", help="Keep an earlier generated database.")
    parser.add_argument("--no-export", action="store_true", help="Skip the export rates.")
    args = parser.parse_args()

    host = machine()
    url = database(DB_NAME, fresh=not args.reuse)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM calls").fetchone()
        existing = int(row[0]) if row else 0
    generated_s = None
    if existing == 0:
        print(f"generating {args.calls:,} calls ...", flush=True)
        generated_s = generate(url, args.calls)
        print(f"generated in {generated_s:.0f} s", flush=True)
    deltas = live_traffic(url, 2000)
    key = make_key(url)
    runtime = configure(url, "parley-bench-analytics:")

    from functions.analytics.app import handler
    from functions.samples import http_event

    with psycopg.connect(url) as conn:
        numbers = [
            r[0]
            for r in conn.execute(
                "SELECT from_number FROM calls WHERE tenant_id = %s LIMIT 500", (TENANT,)
            )
        ]
        total = conn.execute("SELECT count(*) FROM calls").fetchone()
    rng = random.Random(7)
    now = datetime.now(UTC)

    def get(
        path: str, query: dict[str, str], accept: str = "application/json"
    ) -> tuple[float, Any]:
        event = http_event(
            "GET", path, query=query, headers={"authorization": f"Bearer {key}", "accept": accept}
        )
        ms, status, body = timed(handler, event)
        assert status == 200, (path, query, status, body[:300])
        return ms, body

    def iso(days: int) -> str:
        return (now - timedelta(days=days)).isoformat()

    list_cases: dict[str, Any] = {
        "list: newest 50": lambda: {},
        "list: disposition": lambda: {"disposition": rng.choice(DISPOSITIONS)},
        "list: agent": lambda: {"agent_id": f"agent-{rng.randrange(5)}"},
        "list: status + last 7 days": lambda: {"status": "completed", "started_after": iso(7)},
        "list: intent": lambda: {"intent": rng.choice(INTENTS)},
        "list: number": lambda: {"number": rng.choice(numbers)},
        "list: duration range": lambda: {"min_duration_ms": "100000", "max_duration_ms": "200000"},
        "list: disposition + agent + 30 days": lambda: {
            "disposition": rng.choice(DISPOSITIONS),
            "agent_id": f"agent-{rng.randrange(5)}",
            "started_after": iso(30),
        },
        "list: time window 1 day, 90 days ago": lambda: {
            "started_after": iso(91),
            "started_before": iso(90),
        },
        "list: sort by duration": lambda: {"sort": "-duration_ms", "limit": "20"},
        "list: text search in transcripts": lambda: {
            "q": rng.choice(["refund", "damaged parcel", "sunday", "subscription"])
        },
    }
    results: dict[str, dict[str, float]] = {}
    all_lists: list[float] = []
    for name, params in list_cases.items():
        times = [get("/v1/calls", params())[0] for _ in range(args.runs)]
        results[name] = percentiles(times)
        all_lists += times
    # Following pages through cursors.
    pages: list[float] = []
    cursor = None
    for _ in range(args.runs):
        query = {"disposition": "resolved", "limit": "50"} | ({"cursor": cursor} if cursor else {})
        ms, body = get("/v1/calls", query)
        pages.append(ms)
        cursor = json.loads(body)["next_cursor"]
    results["list: next page (cursor)"] = percentiles(pages)
    all_lists += pages
    results["ALL LIST QUERIES"] = percentiles(all_lists)
    csv_times = [get("/v1/calls", {"limit": "500"}, accept="text/csv")[0] for _ in range(args.runs)]
    results["(no target) CSV export, 500 rows"] = percentiles(csv_times)

    start, end = (now - timedelta(days=89)).date().isoformat(), now.date().isoformat()
    summary_cases = {
        "summary: dispositions by day, 90 days": ("/v1/dispositions/summary", {"group_by": "day"}),
        "summary: dispositions by week, 90 days": (
            "/v1/dispositions/summary",
            {"group_by": "week"},
        ),
        "summary: dispositions by agent, 90 days": (
            "/v1/dispositions/summary",
            {"group_by": "agent"},
        ),
        "summary: intents by day, 90 days": ("/v1/intents/summary", {"group_by": "day"}),
        "summary: latency p50/p95 per agent, 90 days": ("/v1/latency/summary", {}),
    }
    all_summaries: list[float] = []
    for name, (path, params) in summary_cases.items():
        times = [get(path, params | {"start": start, "end": end})[0] for _ in range(args.runs)]
        results[name] = percentiles(times)
        all_summaries += times
    results["ALL SUMMARIES"] = percentiles(all_summaries)

    week_ago = (now - timedelta(days=7)).date().isoformat()
    aggregate_cases: dict[str, dict[str, Any]] = {
        "aggregate: escalated last week per agent and intent": {
            "disposition": "escalated_to_human",
            "started_after": week_ago,
            "group_by": ["agent", "intent"],
            "subtotals": "true",
        },
        "aggregate: 90 days by week and disposition": {
            "started_after": start,
            "group_by": ["week", "disposition"],
        },
        "aggregate: 30 days per agent (cost, latency)": {
            "started_after": iso(30),
            "group_by": "agent",
        },
        "aggregate: a year by end reason": {"group_by": "end_reason"},
    }
    all_aggregates: list[float] = []
    sources: dict[str, str] = {}
    for name, params in aggregate_cases.items():
        times = []
        for _ in range(args.runs):
            ms, body = get("/v1/calls/aggregate", params)
            times.append(ms)
        sources[name] = json.loads(body)["percentiles"]
        results[name] = percentiles(times)
        all_aggregates += times
    results["ALL AGGREGATES"] = percentiles(all_aggregates)
    # The same questions from the calls rows (a duration filter every generated call passes
    # forces the exact path): what the rollup saves, measured in the same run.
    for name, params in aggregate_cases.items():
        exact: dict[str, Any] = {**params, "min_duration_ms": "0"}
        times = [get("/v1/calls/aggregate", exact)[0] for _ in range(max(3, args.runs // 4))]
        results[f"(no target) exact {name.removeprefix('aggregate: ')}"] = percentiles(times)
    asyncio.get_event_loop().run_until_complete(runtime.close())
    exports = {} if args.no_export else export_rates(key, iso(30))

    print(f"machine: {host}")
    print(
        f"calls in PostgreSQL: {total[0] if total else 0:,} (tenant {TENANT}: 60%); "
        f"pending rollup deltas at start: {deltas}"
    )
    print(table(results))
    for name, source in sources.items():
        print(f"{name}: percentiles {source}")
    for name, rate in exports.items():
        print(
            f"{name}: {rate['rows']:,} rows in {rate['seconds']} s = {rate['rows_per_s']:,} rows/s "
            f"({rate['mb_per_s']} MB/s)"
        )
    verdict = {
        "list p95 <= 50 ms": results["ALL LIST QUERIES"]["p95"] <= 50,
        "summaries p95 <= 200 ms": results["ALL SUMMARIES"]["p95"] <= 200,
        "aggregates p95 <= 200 ms": results["ALL AGGREGATES"]["p95"] <= 200,
    }
    print(verdict)
    path = save(
        "analytics",
        {
            "machine": host,
            "calls": total[0] if total else 0,
            "generated_s": generated_s,
            "results_ms": results,
            "aggregate_percentiles": sources,
            "export": exports,
            "targets_met": verdict,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
