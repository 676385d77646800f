"""Outcome webhooks end to end, every part real: events published to Kafka, ``parley events
consume`` projecting them and recording deliveries, ``parley worker`` and ``parley beat``
(Celery on Redis) POSTing them, and a receiver process that is killed mid-run (with a worker)
and started again. Nothing is lost, every request is signed, a duplicate only ever repeats a
delivery's id, and a receiver that keeps failing fills the dead-letter list until a redelivery
gets through."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from functions.admin.app import handler as admin
from functions.jobs.processes import ROOT
from functions.jobs.processes import JobProcesses as Workers
from functions.webhooks.signing import verify
from shared.bus.kafka import KafkaBus
from shared.events import EscalationRequested, Event
from tests.events.conftest import call_events
from tests.functions.conftest import Tenant, api_event, invoke

pytestmark = pytest.mark.integration

CALLS_PER_WAVE = 15
RECEIVER = "tests.functions.webhook_receiver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(method: str, path: str, tenant: Tenant, body: Any = None, **query: str) -> Any:
    event = api_event("admin.get-v1-webhooks.json", tenant, path=path, query=query, body=body)
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = f"{method} {path}"
    return invoke(admin, event)


class Receiver:
    """The receiver process on a fixed port, and what it logged."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", RECEIVER, str(self.port), str(self.log), *flags],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the receiver did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def entries(self, path: str) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        # The last line may be half-written when the receiver was killed: it was not answered.
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry["path"] == path:
                out.append(entry)
        return out


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path / "received.jsonl")
    yield r
    if r.proc is not None and r.proc.poll() is None:
        r.kill()


def _wait(check: Callable[[], bool], seconds: float, what: str, workers: Workers) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{workers.logs()}")


def _wave(tenant_id: str, n: int) -> list[Event]:
    """``n`` calls (start, turns, intent, disposition, end); every third asks for a human."""
    events: list[Event] = []
    for i in range(n):
        call = call_events(f"wh-{uuid.uuid4().hex[:10]}", 6, tenant=tenant_id)
        if i % 3 == 0:
            escalation = Event(
                tenant_id=tenant_id,
                call_id=call[0].call_id,
                seq=len(call),
                payload=EscalationRequested(reason="explicit_request", target="+15550002222"),
            )
            ended = call[-1].model_copy(update={"seq": len(call) + 1})
            call = [*call[:-1], escalation, ended]
        events.extend(call)
    return events


async def _publish(bootstrap: str, prefix: str, events: list[Event]) -> None:
    bus = KafkaBus(bootstrap, topic_prefix=prefix)
    await bus.start()
    try:
        for event in events:
            await bus.publish(event)
    finally:
        await bus.stop()


def test_deliveries_survive_a_receiver_and_a_worker_killed_mid_run(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    receiver: Receiver,
    redis_prefix: str,
    kafka_bootstrap: str,
    kafka_topic_prefix: str,
    tmp_path: Path,
) -> None:
    base = f"http://127.0.0.1:{receiver.port}"
    main = api(
        "POST", "/v1/webhooks", tenant, {"url": f"{base}/ok", "events": ["call.*", "transfer.*"]}
    )
    assert main.status == 201, main.body
    broken = api(
        "POST", "/v1/webhooks", tenant, {"url": f"{base}/broken", "events": ["call.ended"]}
    )
    assert broken.status == 201, broken.body
    main_id, secret = main.json()["subscription_id"], main.json()["secret"]
    broken_id, broken_secret = broken.json()["subscription_id"], broken.json()["secret"]

    s = rt.settings
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")},
        "PARLEY_ENV": "test",
        "PARLEY_DATABASE_URL": s.database_url,
        "PARLEY_REDIS_URL": s.redis_url,
        "PARLEY_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PARLEY_KAFKA_TOPIC_PREFIX": kafka_topic_prefix,
        "PARLEY_JOBS_KEY_PREFIX": f"{redis_prefix}jobs:",
        "PARLEY_JOBS_VISIBILITY_TIMEOUT_S": "3",
        "PARLEY_CAMPAIGN_TICK_S": "5",
        "PARLEY_WEBHOOK_SWEEP_S": "0.3",
        "PARLEY_ANALYSIS_SWEEP_S": "0.5",
        "PARLEY_WEBHOOK_LEASE_S": "3",
        "PARLEY_WEBHOOK_TIMEOUT_S": "2",
        "PARLEY_WEBHOOK_RETRY_BASE_S": "0.3",
        "PARLEY_WEBHOOK_RETRY_FACTOR": "2",
        "PARLEY_WEBHOOK_RETRY_MAX_S": "2",
        "PARLEY_WEBHOOK_MAX_ATTEMPTS": "6",
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    workers = Workers(env, str(tmp_path))
    try:
        receiver.start()
        workers.start("events", "consume", "--group", f"wh-{uuid.uuid4().hex[:6]}",
                      "--lost-call-sweep-s", "0")  # fmt: skip
        worker = workers.start("worker", "--concurrency=2")
        workers.start("beat")

        first, second = (
            _wave(tenant.tenant_id, CALLS_PER_WAVE),
            _wave(tenant.tenant_id, CALLS_PER_WAVE),
        )
        asyncio.run(_publish(kafka_bootstrap, kafka_topic_prefix, first))
        _wait(lambda: len(receiver.entries("/ok")) >= 10, 60, "the first deliveries", workers)
        # Mid-run: the receiver and a worker die; the second wave arrives while they are down.
        receiver.kill()
        workers.kill(worker)
        asyncio.run(_publish(kafka_bootstrap, kafka_topic_prefix, second))
        workers.start("worker", "--concurrency=2")
        _wait(
            lambda: (
                sql.execute(
                    "SELECT 1 FROM webhook_attempts a JOIN webhook_deliveries d "
                    "USING (delivery_id) WHERE d.subscription_id = %s AND a.status_code IS NULL "
                    "LIMIT 1",
                    (main_id,),
                ).fetchone()
                is not None
            ),
            60,
            "an attempt to meet the dead receiver",
            workers,
        )
        receiver.start()

        calls = {e.call_id for e in first + second}
        escalated = {e.call_id for e in first + second if e.type == "escalation.requested"}
        expected = 3 * len(calls) + len(escalated)

        def main_rows() -> list[dict[str, Any]]:
            return sql.execute(
                "SELECT delivery_id, event_type, call_id, status FROM webhook_deliveries "
                "WHERE subscription_id = %s",
                (main_id,),
            ).fetchall()

        _wait(
            lambda: (
                len(rows := main_rows()) == expected
                and all(r["status"] == "delivered" for r in rows)
            ),
            120,
            f"{expected} deliveries delivered",
            workers,
        )
        _wait(
            lambda: (
                sql.execute(
                    "SELECT count(*) FILTER (WHERE status = 'dead') AS dead, count(*) AS n "
                    "FROM webhook_deliveries WHERE subscription_id = %s",
                    (broken_id,),
                ).fetchone()
                == {"dead": len(calls), "n": len(calls)}
            ),
            120,
            "the broken receiver's deliveries to go dead",
            workers,
        )
        rows = main_rows()
        assert Counter(r["event_type"] for r in rows) == {
            "call.started": len(calls),
            "call.ended": len(calls),
            "call.analyzed": len(calls),
            "transfer.requested": len(escalated),
        }
        by_id = {r["delivery_id"]: r for r in rows}
        received = [e for e in receiver.entries("/ok") if e["answered"] == 200]
        assert {e["headers"]["parley-webhook-id"] for e in received} == set(by_id)  # none lost
        bodies: dict[str, bytes] = {}
        for entry in received:
            headers, body = entry["headers"], base64.b64decode(entry["body"])
            delivery_id = headers["parley-webhook-id"]
            assert verify(
                secret,
                headers["parley-webhook-timestamp"],
                headers["parley-webhook-signature"],
                body,
            )
            assert not verify(  # another subscription's secret does not sign it
                broken_secret,
                headers["parley-webhook-timestamp"],
                headers["parley-webhook-signature"],
                body,
            )
            # A repeat (at least once) carries the same id and the same body.
            assert bodies.setdefault(delivery_id, body) == body
            payload = json.loads(body)
            assert (
                payload["id"] == delivery_id and payload["type"] == by_id[delivery_id]["event_type"]
            )
            assert payload["data"]["call_id"] == by_id[delivery_id]["call_id"]
            if payload["type"] == "call.analyzed":
                assert payload["data"]["disposition"] == "resolved"
                assert payload["data"]["summary"] == "done"
                assert payload["data"]["primary_intent"] == "i0"
                want = "explicit_request" if payload["data"]["call_id"] in escalated else None
                assert payload["data"]["escalation_reason"] == want
        # The outage is in the delivery log: attempts that got no answer, then a 2xx.
        retried = sql.execute(
            "SELECT DISTINCT delivery_id FROM webhook_attempts a JOIN webhook_deliveries d "
            "USING (delivery_id) WHERE d.subscription_id = %s AND a.status_code IS NULL",
            (main_id,),
        ).fetchall()
        assert retried, "no delivery met the dead receiver"
        detail = api("GET", f"/v1/webhook-deliveries/{retried[0]['delivery_id']}", tenant).json()
        assert detail["status"] == "delivered"
        # The first attempt either found nothing listening or was cut off by the kill itself.
        assert detail["log"][0]["status_code"] is None
        assert detail["log"][0]["error"].split(":")[0] in {"ConnectError", "ReadError"}, detail
        assert "receiver" in detail["log"][0]["error"]
        assert detail["log"][-1]["status_code"] == 200

        # The dead-letter list, through the API; every attempt of a dead one was answered 500.
        dead = api("GET", "/v1/webhook-deliveries", tenant, status="dead", limit="100").json()
        assert {d["subscription_id"] for d in dead["items"]} == {broken_id}
        assert len(dead["items"]) == len(calls)
        letter = dead["items"][0]
        assert letter["attempts"] == 6 and letter["last_status"] == 500
        assert letter["last_error"].startswith("HTTP 500")

        # The receiver is fixed; one redelivery, by hand, gets through with the same id.
        receiver.kill()
        receiver.start("--healthy")
        again = api("POST", f"/v1/webhook-deliveries/{letter['delivery_id']}/redeliver", tenant)
        assert again.status == 202, again.body
        assert again.json()["status"] == "pending" and again.json()["attempts"] == 0
        _wait(
            lambda: any(
                e["headers"]["parley-webhook-id"] == letter["delivery_id"] and e["answered"] == 200
                for e in receiver.entries("/broken")
            ),
            60,
            "the redelivery",
            workers,
        )
        _wait(
            lambda: (
                api("GET", f"/v1/webhook-deliveries/{letter['delivery_id']}", tenant).json()[
                    "status"
                ]
                == "delivered"
            ),
            30,
            "the redelivered row to be delivered",
            workers,
        )
    finally:
        workers.stop_all()
    log = api("GET", f"/v1/webhook-deliveries/{letter['delivery_id']}", tenant).json()["log"]
    assert [a["status_code"] for a in log] == [500] * 6 + [200]
