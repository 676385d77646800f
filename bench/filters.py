"""Benchmark: the call filters the aggregate rollup cannot answer, on the list, before and after
the indexes of migration 0383 (``shared/db/migrations/0383_call_filter_indexes.sql``) and the
metadata index of 0380. Filters without an index of their own are measured too, as a control.

The calls are generated as bench/analytics.py generates them (``--calls``, default 300,000: a
test-sized dataset), then given what those filters read: extracted slots, tools, escalation
reasons, a spread of end reasons, and API metadata on the outbound calls. Each case is a first
page (``limit=50``) through ``functions.analytics.app.handler`` (auth included), ``--runs`` times
with the indexes dropped ("before") and again with them ("after"), in one process, same data.

Run: ``.venv/bin/python bench/filters.py [--calls 300000] [--runs 30] [--reuse]``
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analytics import TENANT, generate, make_key
from webhooks import configure, database, machine, percentiles, save, table, timed

DB_NAME = "parley_bench_filters"
MIGRATION = Path(__file__).resolve().parents[1] / "shared/db/migrations/0383_call_filter_indexes"

# What the generator leaves out, set the way the consumer's projection would: a rare escalation
# reason, slots on a third of the calls, an http tool on a tenth, end reasons, API metadata.
# (primary_intent is generated from the intents.)
ENRICH = """
UPDATE calls SET
    escalation_reason = CASE WHEN disposition = 'escalated_to_human'
        THEN (ARRAY['explicit_request', 'low_confidence', 'policy'])[1 + abs(hashtext(call_id)) % 3]
        END,
    end_reason = (ARRAY['hangup', 'hangup', 'hangup', 'agent_end', 'timeout', 'transfer',
                        'error'])[1 + abs(hashtext(call_id || 'e')) % 7],
    slots = CASE WHEN abs(hashtext(call_id || 's')) % 3 = 0
        THEN jsonb_build_object('order_id', 'A-' || abs(hashtext(call_id)) % 100000)
        WHEN abs(hashtext(call_id || 's')) % 50 = 1
        THEN jsonb_build_object('refund_amount', (abs(hashtext(call_id)) % 500)::text)
        ELSE '{}'::jsonb END,
    tools = CASE WHEN abs(hashtext(call_id || 't')) % 10 = 0 THEN ARRAY['lookup_order']
        WHEN abs(hashtext(call_id || 't')) % 200 = 1 THEN ARRAY['issue_refund']
        ELSE ARRAY[]::text[] END,
    metadata = CASE WHEN direction = 'outbound-api'
        THEN jsonb_build_object('crm_id', 'crm-' || abs(hashtext(call_id)) % 50000,
                                'campaign', 'spring')
        ELSE '{}'::jsonb END
"""
ENRICH_TOOLS = """
UPDATE calls SET tool_calls = cardinality(tools),
    tool_failures = CASE WHEN cardinality(tools) > 0 AND abs(hashtext(call_id || 'f')) % 20 = 0
        THEN 1 ELSE 0 END
"""


# The metadata filter's index comes with its column (0380); measured the same way.
METADATA_INDEX = "CREATE INDEX calls_metadata ON calls USING gin (metadata)"


def _statements() -> list[str]:
    text = MIGRATION.with_suffix(".sql").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()] + [METADATA_INDEX]


def _index_names() -> list[str]:
    return [statement.split()[2] for statement in _statements()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=30, help="Requests per case and phase.")
    parser.add_argument("--reuse", action="store_true", help="Keep an earlier generated database.")
    args = parser.parse_args()

    host = machine()
    url = database(DB_NAME, fresh=not args.reuse)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM calls").fetchone()
        if not row or row[0] == 0:
            print(f"generating {args.calls:,} calls ...", flush=True)
            print(f"generated in {generate(url, args.calls):.0f} s", flush=True)
        if conn.execute("SELECT 1 FROM calls WHERE tools <> '{}' LIMIT 1").fetchone() is None:
            started = time.perf_counter()
            conn.execute("SET session_replication_role = replica")  # rollups rebuilt once below
            conn.execute(ENRICH)
            conn.execute(ENRICH_TOOLS)
            conn.execute("SET session_replication_role = DEFAULT")
            conn.execute("SELECT parley_rebuild_rollups()")
            conn.execute("VACUUM ANALYZE calls")
            print(f"enriched in {time.perf_counter() - started:.0f} s", flush=True)
        crm = conn.execute(
            "SELECT metadata ->> 'crm_id' FROM calls WHERE tenant_id = %s AND metadata ? 'crm_id' "
            "ORDER BY started_at LIMIT 1",
            (TENANT,),
        ).fetchone()
        order = conn.execute(
            "SELECT slots ->> 'order_id' FROM calls WHERE tenant_id = %s AND slots ? 'order_id' "
            "ORDER BY started_at LIMIT 1",
            (TENANT,),
        ).fetchone()
        total = conn.execute(
            "SELECT count(*) FROM calls WHERE tenant_id = %s", (TENANT,)
        ).fetchone()
    assert crm and order and total
    key = make_key(url)
    runtime = configure(url, "parley-bench-filters:")

    from functions.analytics.app import handler
    from functions.samples import http_event

    def get(query: dict[str, str]) -> float:
        event = http_event(
            "GET",
            "/v1/calls",
            query=query | {"limit": "50"},
            headers={"authorization": f"Bearer {key}", "accept": "application/json"},
        )
        ms, status, body = timed(handler, event)
        assert status == 200, (query, status, body[:300])
        return ms

    cases: dict[str, dict[str, str]] = {
        "escalation_reason (1 call in 18)": {"escalation_reason": "policy"},
        "primary_intent (1 in 6)": {"primary_intent": "store_hours"},
        "end_reason (1 in 7)": {"end_reason": "error"},
        "escalated=true (1 in 6)": {"escalated": "true"},
        "slot set (2%)": {"slot": "refund_amount"},
        "slot = value (one call)": {"slot": f"order_id:{order[0]}"},
        "tool (0.5%)": {"tool": "issue_refund"},
        "tool_failed=true": {"tool_failed": "true"},
        "metadata = value (a few calls)": {"metadata": f"crm_id:{crm[0]}"},
        "metadata set (outbound)": {"metadata": "campaign"},
    }
    names = _index_names()
    results: dict[str, Any] = {}
    for phase in ("before", "after"):
        with psycopg.connect(url, autocommit=True) as conn:
            if phase == "before":
                for name in names:
                    conn.execute(f"DROP INDEX IF EXISTS {name}")
            else:
                started = time.perf_counter()
                for statement in _statements():
                    conn.execute(statement.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS "))
                results["index build s"] = round(time.perf_counter() - started, 1)
            conn.execute("ANALYZE calls")
        rng = random.Random(3)
        for name, query in cases.items():
            for _ in range(3):
                get(query)  # warm the cache
            times = [get(query) for _ in range(args.runs)]
            rng.shuffle(times)
            results[f"{phase}: {name}"] = percentiles(times)
        print(f"\n{phase}\n" + table({k: v for k, v in results.items() if k.startswith(phase)}))

    with psycopg.connect(url) as conn:
        sizes = {
            name: conn.execute("SELECT pg_relation_size(%s::regclass)", (name,)).fetchone()[0]
            for name in names
        }
    results["index bytes"] = sizes
    results["calls"] = args.calls
    results["tenant calls"] = int(total[0])
    results["machine"] = host
    path = save("filters", results)
    print(f"\nindex sizes (bytes): {sizes}\nsaved to {path}")
    import asyncio

    asyncio.get_event_loop().run_until_complete(runtime.close())


if __name__ == "__main__":
    main()
