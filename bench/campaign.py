"""Benchmark: campaign dial throughput and scheduler latency with real Celery workers.

A scratch database, the local API (``parley api serve``'s app) in a thread, a minimal HTTP fake
of Twilio's Calls API that answers at once and posts each call's ``completed`` status callback
back, signed, and ``parley worker`` + ``parley beat`` as real processes on the real Redis.
Measured: dials per second at the fake from the first to the last dial; scheduler latency per
attempt = the fake receiving the dial minus the attempt's ``queued_at`` (dispatch → Twilio);
start latency = the start request → the first dial.

Run: ``.venv/bin/python bench/campaign.py [--contacts 300 --cps 50 --concurrency 40]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import psycopg
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.webhooks import REDIS_URL, RESULTS, database

ACCOUNT = "AC" + "0" * 32
TOKEN = "bench-token"


def fake_twilio(received: list[tuple[float, str]]) -> ThreadingHTTPServer:
    from functions.samples import twilio_signature

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            at = time.time()
            form = dict(parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            sid = "CA" + uuid.uuid4().hex
            received.append((at, form["To"]))
            body = json.dumps({"sid": sid, "status": "queued"}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            url = form["StatusCallback"]
            done = {"CallSid": sid, "CallStatus": "completed", "CallDuration": "5"}
            done |= {"AccountSid": ACCOUNT, "SequenceNumber": "3"}

            def callback() -> None:
                sig = twilio_signature(url, done, TOKEN)
                httpx.post(url, data=done, headers={"X-Twilio-Signature": sig}, timeout=10)

            threading.Thread(target=callback, daemon=True).start()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=300)
    parser.add_argument("--cps", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    url = database("parley_bench_campaign", fresh=True)
    received: list[tuple[float, str]] = []
    twilio = fake_twilio(received)
    port = 18000 + os.getpid() % 1000
    prefix = f"parley-bench:{uuid.uuid4().hex[:6]}:jobs:"
    env = {
        **os.environ,
        "PARLEY_DATABASE_URL": url,
        "PARLEY_REDIS_URL": REDIS_URL,
        "PARLEY_JOBS_KEY_PREFIX": prefix,
        "PARLEY_CAMPAIGN_TICK_S": "0.5",
        "PARLEY_TWILIO_ACCOUNT_SID": ACCOUNT,
        "PARLEY_TWILIO_AUTH_TOKEN": TOKEN,
        "PARLEY_TWILIO_API_BASE": f"http://127.0.0.1:{twilio.server_address[1]}",
        "PARLEY_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "PARLEY_SESSION_TOKEN_SECRET": "bench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    from functions.common.auth import generate_key, hash_key
    from functions.local import create_local_app

    key = generate_key()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ('bench', 'bench')")
        conn.execute(
            "INSERT INTO api_keys (key_id, tenant_id, key_hash, scopes) "
            "VALUES (%s, 'bench', %s, '{admin}')",
            (key.key_id, hash_key(key.secret)),
        )
        conn.execute(
            "INSERT INTO agents (tenant_id, agent_id, name, active_version) "
            "VALUES ('bench', 'bench-agent', 'bench', 1)"
        )
        conn.execute(
            "INSERT INTO phone_numbers (number, tenant_id, agent_id) "
            "VALUES ('+15550001111', 'bench', 'bench-agent')"
        )
    server = uvicorn.Server(
        uvicorn.Config(create_local_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in [["worker", "--concurrency=4", "--loglevel=warning"]] * args.workers
        + [["beat", "--loglevel=warning"]]
    ]
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {key.secret}"},
        timeout=30,
    )
    try:
        campaign = api.post(
            "/v1/campaigns",
            json={
                "name": "bench",
                "agent_id": "bench-agent",
                "window": {"start": "00:00:00", "end": "23:59:59", "days": [1, 2, 3, 4, 5, 6, 7]},
                "max_concurrency": args.concurrency,
                "calls_per_second": args.cps,
                "contacts": [
                    {"number": f"+1555{i:07d}", "timezone": "UTC"} for i in range(args.contacts)
                ],
            },
        ).json()["campaign_id"]
        time.sleep(5)  # the workers are up before the clock starts
        started = time.time()
        api.post(f"/v1/campaigns/{campaign}/start").raise_for_status()
        deadline = time.monotonic() + 600
        while api.get(f"/v1/campaigns/{campaign}").json()["status"] != "completed":
            if time.monotonic() > deadline:
                raise SystemExit("the campaign did not complete in 10 minutes")
            time.sleep(0.2)
        with psycopg.connect(url) as conn:
            queued = dict(
                conn.execute(
                    "SELECT k.number, a.queued_at FROM campaign_attempts a "
                    "JOIN campaign_contacts k ON k.contact_id = a.contact_id"
                ).fetchall()
            )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        server.should_exit = True
    times = sorted(at for at, _ in received)
    latencies = sorted((at - queued[to].timestamp()) * 1000 for at, to in received if to in queued)
    result = {
        "benchmark": "campaign",
        "when": datetime.now(UTC).isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "contacts": args.contacts,
        "calls_per_second_limit": args.cps,
        "max_concurrency": args.concurrency,
        "workers": args.workers,
        "dials": len(received),
        "dials_per_second": round((len(times) - 1) / (times[-1] - times[0]), 1),
        "start_to_first_dial_ms": round((times[0] - started) * 1000, 1),
        "scheduler_latency_ms_p50": round(statistics.median(latencies), 1),
        "scheduler_latency_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1], 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "campaign.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
