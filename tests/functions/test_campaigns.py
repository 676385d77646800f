"""Campaigns end to end: the API on a real port, real Celery worker and beat processes on the
real Redis and PostgreSQL, and the HTTP fake of Twilio, which checks each request and plays
Twilio's status and AMD callbacks back to the API, signed as Twilio signs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from functions.samples import SAMPLE_ACCOUNT_SID, SAMPLE_AUTH_TOKEN, twilio_signature
from tests.functions.conftest import FakeTwilio, Recorded, Tenant, call_sid, make_agent, phone

pytestmark = pytest.mark.integration

CALLS = f"/2010-04-01/Accounts/{SAMPLE_ACCOUNT_SID}/Calls"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOICEMAIL_MESSAGE = "Hi, this is Acme calling about your order. Please call us back."


class Workers:
    """``parley worker`` / ``parley beat`` as real processes, each in its own process group so
    a test can kill one with everything it forked."""

    def __init__(self, env: dict[str, str], tmp: str) -> None:
        self.env = env
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.paths: dict[int, str] = {}

    def start(self, command: str, *args: str) -> subprocess.Popen[bytes]:
        path = os.path.join(self.tmp, f"{command}-{len(self.procs)}.log")
        log = open(path, "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", command, *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        self.paths[proc.pid] = path
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def logs(self) -> str:
        out = []
        for name in sorted(os.listdir(self.tmp)):
            if name.endswith(".log"):
                with open(os.path.join(self.tmp, name), errors="replace") as f:
                    out.append(f"--- {name}\n{f.read()[-3000:]}")
        return "\n".join(out)


@pytest.fixture
def workers(
    rt: Any, live_api: str, fake_twilio: FakeTwilio, redis_prefix: str, tmp_path: Any
) -> Iterator[Workers]:
    prefix = f"{redis_prefix}jobs:"
    rt._settings = rt.settings.model_copy(update={"jobs_key_prefix": prefix})
    s = rt.settings
    env = {
        **os.environ,
        "PARLEY_ENV": "test",
        "PARLEY_DATABASE_URL": s.database_url,
        "PARLEY_REDIS_URL": s.redis_url,
        "PARLEY_JOBS_KEY_PREFIX": prefix,
        "PARLEY_JOBS_VISIBILITY_TIMEOUT_S": "3",
        "PARLEY_CAMPAIGN_TICK_S": "0.5",
        "PARLEY_TWILIO_ACCOUNT_SID": SAMPLE_ACCOUNT_SID,
        "PARLEY_TWILIO_AUTH_TOKEN": SAMPLE_AUTH_TOKEN,
        "PARLEY_TWILIO_API_BASE": fake_twilio.base_url,
        "PARLEY_PUBLIC_BASE_URL": live_api,
        "PARLEY_SESSION_TOKEN_SECRET": "test-session-secret",
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    group = Workers(env, str(tmp_path))
    try:
        yield group
    finally:
        group.stop_all()
        if os.environ.get("PARLEY_TEST_SHOW_WORKER_LOGS"):
            print(group.logs())


def _post_signed(url: str, form: dict[str, str]) -> None:
    """A Twilio callback: form-encoded, signed over the exact URL with its query."""
    signature = twilio_signature(url, form, SAMPLE_AUTH_TOKEN)
    reply = httpx.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert reply.status_code == 204, reply.text


Script = Callable[[Recorded, str], None]


def play(fake: FakeTwilio, sql: psycopg.Connection[Any], outcomes: dict[str, list[str]]) -> None:
    """After each dial, play what happens to that number's next call, from ``outcomes``:
    answered (a person; the agent resolves it), busy, no-answer, voicemail (AMD says machine)."""
    counters: Counter[str] = Counter()
    lock = threading.Lock()

    def callbacks(request: Recorded, sid: str) -> None:
        to = request.value("To")
        with lock:
            n = counters[to]
            counters[to] += 1
        script = outcomes[to]
        what = script[min(n, len(script) - 1)]
        status_url = request.value("StatusCallback")
        amd_url = request.value("AsyncAmdStatusCallback")
        base = {"AccountSid": SAMPLE_ACCOUNT_SID, "CallSid": sid, "From": request.value("From")}
        base["To"] = to

        def status(value: str, seq: int, **extra: str) -> None:
            _post_signed(
                status_url, base | {"CallStatus": value, "SequenceNumber": str(seq), **extra}
            )

        def run() -> None:
            status("initiated", 0)
            status("ringing", 1)
            if what in ("busy", "no-answer"):
                status(what, 2, CallDuration="0")
                return
            status("in-progress", 2)
            if what == "voicemail":
                _post_signed(amd_url, base | {"AnsweredBy": "machine_end_beep"})
            else:
                _post_signed(amd_url, base | {"AnsweredBy": "human"})
                # The agent's end state, as the media node's events would project it.
                sql.execute(
                    "UPDATE calls SET disposition = 'resolved' WHERE twilio_call_sid = %s", (sid,)
                )
            status("completed", 3, CallDuration="20")

        threading.Thread(target=run, daemon=True).start()

    fake.fresh_sids = True
    fake.after_reply = callbacks


def _agent_with_voicemail(sql: psycopg.Connection[Any], tenant: Tenant) -> str:
    number = phone()
    make_agent(sql, tenant.tenant_id, number=number)
    sql.execute(
        "UPDATE agent_versions SET definition = definition || %s::jsonb WHERE tenant_id = %s",
        (
            json.dumps({"voicemail": {"action": "leave_message", "message": VOICEMAIL_MESSAGE}}),
            tenant.tenant_id,
        ),
    )
    return number


def _local_zone(hour: int) -> str:
    """An Etc/GMT zone where it is now about ``hour`` o'clock."""
    offset = (hour - datetime.now(UTC).hour + 12) % 24 - 12  # -12 .. 11
    return "Etc/GMT" + (f"-{offset}" if offset > 0 else f"+{-offset}") if offset else "Etc/GMT"


def _wait(check: Callable[[], bool], seconds: float, what: str, workers: Workers) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{workers.logs()}")


def _creates(fake: FakeTwilio) -> list[Recorded]:
    with fake.lock:
        return [r for r in fake.requests if r.path == CALLS + ".json"]


def test_a_campaign_of_50_contacts_with_mixed_outcomes(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    live_api: str,
    fake_twilio: FakeTwilio,
    workers: Workers,
) -> None:
    ours = _agent_with_voicemail(sql, tenant)
    noon, midnight = _local_zone(12), _local_zone(0)
    numbers = [f"+1555010{i:04d}" for i in range(50)]
    outcomes: dict[str, list[str]] = {}
    for i, n in enumerate(numbers[:48]):
        outcomes[n] = [
            ["answered"],
            ["busy", "answered"],
            ["no-answer", "no-answer"],
            ["voicemail"],
        ][i % 4]
    dnc_number, outside_number = numbers[48], numbers[49]
    play(fake_twilio, sql, outcomes)
    api = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=10)

    assert api.post("/v1/dnc", json={"numbers": [dnc_number]}).json() == {"added": 1}
    created = api.post(
        "/v1/campaigns",
        json={
            "name": "reminders",
            "agent_id": "acme-shop",
            "window": {"start": "09:00:00", "end": "15:00:00", "days": [1, 2, 3, 4, 5, 6, 7]},
            "max_concurrency": 8,
            "calls_per_second": 25,
            "retry": {
                "busy": {"max_attempts": 2, "backoff_s": 0.5},
                "no_answer": {"max_attempts": 2, "backoff_s": 0.5},
            },
        },
    )
    assert created.status_code == 201, created.text
    campaign_id = created.json()["campaign_id"]
    lines = ["number,timezone,first_name"] + [
        f"{n},{midnight if n == outside_number else noon},Ann{i}" for i, n in enumerate(numbers)
    ]
    added = api.post(
        f"/v1/campaigns/{campaign_id}/contacts",
        content="\n".join(lines),
        headers={"Content-Type": "text/csv"},
    )
    assert added.json() == {"added": 50, "duplicates": 0}, added.text

    for _ in range(2):
        workers.start("worker", "--concurrency=4")
    workers.start("beat")
    started = api.post(f"/v1/campaigns/{campaign_id}/start")
    assert started.status_code == 200 and started.json()["status"] == "running"

    def settled() -> bool:
        contacts = api.get(f"/v1/campaigns/{campaign_id}/progress").json()["contacts"]
        return contacts.get("done", 0) == 48 and contacts.get("skipped", 0) == 1

    _wait(settled, 90, "48 contacts done", workers)
    progress = api.get(f"/v1/campaigns/{campaign_id}/progress").json()
    assert progress["status"] == "running"  # the one outside its window still waits
    assert progress["contacts"] == {"done": 48, "skipped": 1, "pending": 1}
    assert progress["outcomes"] == {"answered": 24, "no_answer": 12, "voicemail": 12, "dnc": 1}
    assert progress["dispositions"] == {"resolved": 24, "voicemail": 12}
    assert progress["attempts"] == {"answered": 24, "busy": 12, "no_answer": 24, "voicemail": 12}

    creates = _creates(fake_twilio)
    per_number = Counter(r.value("To") for r in creates)
    assert dnc_number not in per_number and outside_number not in per_number
    for n in numbers[:48]:
        assert per_number[n] == {"busy": 2, "no-answer": 2}.get(outcomes[n][0], 1), n
    first = creates[0]
    assert first.value("From") == ours
    attempt = parse_qs(urlsplit(first.value("Url")).query)["attempt"][0]
    assert {k for k, _ in first.form} == {
        "To",
        "From",
        "Method",
        "Url",
        "StatusCallback",
        "StatusCallbackEvent",
        "StatusCallbackMethod",
        "MachineDetection",
        "AsyncAmd",
        "AsyncAmdStatusCallback",
        "AsyncAmdStatusCallbackMethod",
    }
    assert first.value("Url") == f"{live_api}/twilio/voice?attempt={attempt}"
    assert first.value("StatusCallback") == f"{live_api}/twilio/status?attempt={attempt}"
    assert first.values("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    assert first.value("MachineDetection") == "DetectMessageEnd"
    assert first.value("AsyncAmd") == "true"
    assert first.value("AsyncAmdStatusCallback") == f"{live_api}/twilio/amd?attempt={attempt}"

    # Each voicemail got the agent's message, said after the beep, then the line hung up.
    updates = [r for r in fake_twilio.requests if r.path != CALLS + ".json"]
    assert len(updates) == 12
    twiml = ET.fromstring(updates[0].value("Twiml"))
    assert [e.tag for e in twiml] == ["Say", "Hangup"]
    assert twiml.find("Say").text == VOICEMAIL_MESSAGE  # type: ignore[union-attr]

    # The contact's variables ride on its attempt for the agent ({{ vars.first_name }}).
    row = sql.execute(
        "SELECT k.variables FROM campaign_contacts k WHERE k.number = %s", (numbers[0],)
    ).fetchone()
    assert row == {"variables": {"first_name": "Ann0"}}

    # Cancel: the contact outside its window is over too, and the campaign with it.
    assert api.post(f"/v1/campaigns/{campaign_id}/cancel").json()["status"] == "canceled"
    contacts = api.get(f"/v1/campaigns/{campaign_id}/progress").json()["contacts"]
    assert contacts == {"done": 48, "skipped": 1, "canceled": 1}


def test_a_worker_killed_mid_dial_places_no_second_call_for_the_attempt(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    live_api: str,
    fake_twilio: FakeTwilio,
    workers: Workers,
) -> None:
    _agent_with_voicemail(sql, tenant)
    numbers = [f"+1555020{i:04d}" for i in range(6)]
    play(fake_twilio, sql, {n: ["answered"] for n in numbers})
    held = threading.Event()
    release = threading.Event()

    def hold_first(request: Recorded) -> None:
        if request.value("To") == numbers[0]:
            held.set()
            release.wait(30)

    fake_twilio.before_reply = hold_first
    api = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=10)
    campaign_id = api.post(
        "/v1/campaigns",
        json={
            "name": "kill",
            "agent_id": "acme-shop",
            "window": {"start": "00:00:00", "end": "23:59:59", "days": [1, 2, 3, 4, 5, 6, 7]},
            "max_concurrency": 2,
            "calls_per_second": 10,
            "retry": {"failed": {"max_attempts": 1, "backoff_s": 0}},
            "contacts": [{"number": n, "timezone": "UTC"} for n in numbers],
        },
    ).json()["campaign_id"]
    # One process: the task it dies with is the held dial, and no other is half-way (a dial
    # claimed but not yet sent when its worker dies is, rightly, never sent: it ends lost).
    doomed = workers.start("worker", "--concurrency=1")
    workers.start("beat")
    api.post(f"/v1/campaigns/{campaign_id}/start").raise_for_status()
    assert held.wait(30), workers.logs()
    # The first dial is at Twilio, its answer not yet back: the worker dies with the task.
    workers.kill(doomed)
    killed_at = time.monotonic()
    release.set()
    workers.start("worker", "--concurrency=2")

    def completed() -> bool:
        return api.get(f"/v1/campaigns/{campaign_id}").json()["status"] == "completed"

    _wait(completed, 60, "the campaign to complete", workers)
    per_number = Counter(r.value("To") for r in _creates(fake_twilio))
    assert per_number == {n: 1 for n in numbers}
    progress = api.get(f"/v1/campaigns/{campaign_id}/progress").json()
    # The killed worker never stored the first call's SID: its callbacks (which name the
    # attempt) linked it, so it is answered, not lost.
    assert progress["outcomes"] == {"answered": 6}
    assert progress["attempts"] == {"answered": 6}
    # The killed task comes back after the visibility timeout (3 s here; kombu gives overdue
    # messages back every 10 s): past that window, still one call per number. (When it came
    # back, the replacement logs 'not claimed'; seen in most runs, not asserted: kombu's
    # restore timing is not ours to pin.)
    time.sleep(max(0.0, killed_at + 15 - time.monotonic()))
    assert Counter(r.value("To") for r in _creates(fake_twilio)) == {n: 1 for n in numbers}


def test_stop_calling_me_puts_the_number_on_the_do_not_call_list(
    rt: Any, sql: psycopg.Connection[Any], tenant: Tenant, other_tenant: Tenant, live_api: str
) -> None:
    ours = _agent_with_voicemail(sql, tenant)
    callee, caller = phone(), phone()
    # The agent's opt-out state ended these calls with the disposition do_not_call (as the
    # media node's events project it): the other party's number joins the tenant's list.
    for sid, direction, from_number, to_number in (
        (call_sid(), "outbound-api", ours, callee),
        (call_sid(), "inbound", caller, ours),
    ):
        sql.execute(
            """INSERT INTO calls (call_id, tenant_id, agent_id, twilio_call_sid, from_number,
                   to_number, direction, status, status_rank)
               VALUES (%s, %s, 'acme-shop', %s, %s, %s, %s, 'in-progress', 2)""",
            (f"call-{sid[-10:]}", tenant.tenant_id, sid, from_number, to_number, direction),
        )
        sql.execute(
            "UPDATE calls SET disposition = 'do_not_call' WHERE twilio_call_sid = %s", (sid,)
        )
    api = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=10)
    assert api.get("/v1/dnc").json() == sorted([callee, caller])
    other = httpx.Client(base_url=live_api, headers={"Authorization": other_tenant.auth})
    assert other.get("/v1/dnc").json() == []
    # (Dispatch skips listed numbers: the 50-contact campaign above checks it.)
    campaign_id = api.post(
        "/v1/campaigns",
        json={
            "name": "after opt-out",
            "agent_id": "acme-shop",
            "contacts": [{"number": callee, "timezone": "UTC"}],
        },
    ).json()["campaign_id"]
    assert api.delete(f"/v1/dnc/{caller}").status_code == 204
    assert api.get("/v1/dnc").json() == [callee]
    assert api.post(f"/v1/campaigns/{campaign_id}/pause").status_code == 409  # still a draft
