"""Benchmark: campaign dial throughput and scheduler latency with real Celery workers.

A scratch database, the local API (``parley api serve``'s app) in a thread, the tests' HTTP
fake of Twilio (tests/functions/conftest.py) answering each dial and posting its final status
callback back, signed, and ``parley worker`` + ``parley beat`` as real processes on the real
Redis (functions/jobs/processes.py, as the campaign tests run them). Every fifth number is
busy on its first call and retried 1 s later.

Measured: dials per second at the fake, first to last dial; **scheduler latency** = the dial
reaching the fake minus the moment its contact was due: the start request for a first attempt,
the end of the busy call plus the backoff for a retry. First attempts include the waiting their
own campaign's CPS and concurrency limits impose (the 300th contact of a 50 cps campaign is due
at once and dialled 6 s later, rightly); retries fall due one by one, so theirs is the
scheduler's own delay (the beat tick, the queue, the worker). Also: dispatch (attempt queued) →
dial at the fake, and the start request → the first dial.

Run: ``.venv/bin/python bench/campaign.py [--contacts 300 --cps 50 --concurrency 40]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.webhooks import REDIS_URL, RESULTS, database
from functions.jobs.processes import JobProcesses
from functions.samples import SAMPLE_ACCOUNT_SID, SAMPLE_AUTH_TOKEN, twilio_signature
from tests.functions.conftest import make_agent, make_tenant

BACKOFF_S = 1.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[max(0, int(len(ordered) * share + 0.5) - 1)], 1)


def summary(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 1),
        "p95": percentile(values, 0.95),
    }


def fake_twilio(dialled: list[tuple[float, str]], busy: set[str]) -> ThreadingHTTPServer:
    """Twilio's Calls API at its leanest: a dial answered at once, its final status posted back
    (signed); the numbers in ``busy`` are busy on their first call. Leaner than the tests' fake
    (which records and checks every request): here only the timing counts."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            at = time.time()
            form = dict(parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            sid = "CA" + uuid.uuid4().hex
            to = form["To"]
            with lock:
                first = all(n != to for _, n in dialled)
                dialled.append((at, to))
            body = json.dumps({"sid": sid, "status": "queued"}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            status = "busy" if first and to in busy else "completed"
            done = {"AccountSid": SAMPLE_ACCOUNT_SID, "CallSid": sid, "CallStatus": status}
            done |= {"CallDuration": "5", "SequenceNumber": "3"}
            callback = form["StatusCallback"]

            def post() -> None:
                signature = twilio_signature(callback, done, SAMPLE_AUTH_TOKEN)
                httpx.post(
                    callback, data=done, headers={"X-Twilio-Signature": signature}, timeout=10
                )

            threading.Thread(target=post, daemon=True).start()

    class Server(ThreadingHTTPServer):
        # Several workers dial at once: socketserver's default backlog of 5 would make the
        # kernel drop their connection attempts, which is the fake's limit, not Twilio's.
        request_queue_size = 256
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
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
    dialled: list[tuple[float, str]] = []  # (when the fake got it, To)
    busy_numbers = {f"+1555{i:07d}" for i in range(0, args.contacts, 5)}
    twilio_server = fake_twilio(dialled, busy_numbers)
    twilio_base = f"http://127.0.0.1:{twilio_server.server_address[1]}"
    port = 18000 + os.getpid() % 1000
    prefix = f"parley-bench:{uuid.uuid4().hex[:6]}:jobs:"
    env = {
        **os.environ,
        "PARLEY_DATABASE_URL": url,
        "PARLEY_REDIS_URL": REDIS_URL,
        "PARLEY_JOBS_KEY_PREFIX": prefix,
        "PARLEY_CAMPAIGN_TICK_S": "0.5",
        "PARLEY_TWILIO_ACCOUNT_SID": SAMPLE_ACCOUNT_SID,
        "PARLEY_TWILIO_AUTH_TOKEN": SAMPLE_AUTH_TOKEN,
        "PARLEY_TWILIO_API_BASE": twilio_base,
        "PARLEY_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "PARLEY_SESSION_TOKEN_SECRET": "bench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    from functions.local import serving_in_thread

    with psycopg.connect(url, autocommit=True) as conn:
        tenant = make_tenant(conn, tenant_id="bench")
        make_agent(conn, "bench", "bench-agent", number="+15550001111")
    logs = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    jobs = JobProcesses(env, logs)
    with serving_in_thread(port) as base:
        for _ in range(args.workers):
            jobs.start("worker", "--concurrency=4", "--loglevel=warning")
        jobs.start("beat", "--loglevel=warning")
        api = httpx.Client(base_url=base, headers={"Authorization": tenant.auth}, timeout=30)
        try:
            campaign = api.post(
                "/v1/campaigns",
                json={
                    "name": "bench",
                    "agent_id": "bench-agent",
                    "window": {"start": "00:00:00", "end": "23:59:59", "days": list(range(1, 8))},
                    "max_concurrency": args.concurrency,
                    "calls_per_second": args.cps,
                    "retry": {"busy": {"max_attempts": 2, "backoff_s": BACKOFF_S}},
                    "contacts": [
                        {"number": f"+1555{i:07d}", "timezone": "UTC"} for i in range(args.contacts)
                    ],
                },
            ).json()["campaign_id"]
            time.sleep(5)  # the workers are up before the clock starts
            started = time.time()
            api.post(f"/v1/campaigns/{campaign}/start").raise_for_status()
            deadline = time.monotonic() + float(os.environ.get("BENCH_DEADLINE_S", "600"))
            while api.get(f"/v1/campaigns/{campaign}").json()["status"] != "completed":
                if time.monotonic() > deadline:  # reported as it stands, marked incomplete
                    break
                time.sleep(0.2)
            progress = api.get(f"/v1/campaigns/{campaign}/progress").json()
            with psycopg.connect(url) as conn:
                attempts = conn.execute(
                    "SELECT k.number, a.attempt_no, a.queued_at, a.finished_at FROM "
                    "campaign_attempts a JOIN campaign_contacts k ON k.contact_id = a.contact_id"
                ).fetchall()
        finally:
            jobs.stop_all()
            twilio_server.shutdown()
    result = report(args, started, dialled, attempts)
    result["completed"] = progress["status"] == "completed"
    result["attempts"] = progress["attempts"]  # failed: the dial never reached the fake
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "campaign.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def report(
    args: argparse.Namespace,
    started: float,
    dialled: list[tuple[float, str]],
    attempts: list[tuple[str, int, datetime, datetime | None]],
) -> dict[str, Any]:
    by_attempt = {(number, no): (queued, finished) for number, no, queued, finished in attempts}
    seen: dict[str, int] = {}
    first_due, retry_due, queued_to_dial = [], [], []
    for at, to in sorted(dialled):
        seen[to] = seen.get(to, 0) + 1
        no = seen[to]
        if (to, no) not in by_attempt:
            continue
        queued, _ = by_attempt[(to, no)]
        queued_to_dial.append((at - queued.timestamp()) * 1000)
        if no == 1:
            first_due.append((at - started) * 1000)
        else:
            previous_end = by_attempt[(to, no - 1)][1]
            if previous_end is None:
                continue
            retry_due.append((at - previous_end.timestamp() - BACKOFF_S) * 1000)
    times = sorted(at for at, _ in dialled)
    return {
        "benchmark": "campaign",
        "when": datetime.now(UTC).isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "contacts": args.contacts,
        "calls_per_second_limit": args.cps,
        "max_concurrency": args.concurrency,
        "workers": args.workers,
        "dials": len(dialled),
        "dials_per_second": round((len(times) - 1) / (times[-1] - times[0]), 1),
        "start_to_first_dial_ms": round((times[0] - started) * 1000, 1),
        "scheduler_latency_ms": {
            "due_to_dial_first_attempts": summary(first_due),
            "due_to_dial_retries": summary(retry_due),
            "queued_to_dial": summary(queued_to_dial),
        },
    }


if __name__ == "__main__":
    main()
