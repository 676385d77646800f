"""Campaigns end to end: the API on a real port, real Celery worker and beat processes on the
real Redis and PostgreSQL, and the HTTP fake of Twilio, which checks each request and plays
Twilio's status and AMD callbacks back to the API, signed as Twilio signs them. Where a test has a
media node, an answered call is what Twilio makes of it: the fake fetches the call's TwiML from
the voice webhook and streams the callee (a person, or a Piper-spoken voicemail greeting and its
beep) to the node named there, through the simulated Twilio caller."""

from __future__ import annotations

import asyncio
import contextlib
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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import numpy.typing as npt
import psycopg
import pytest

from functions.campaigns import store
from functions.common.db import db
from functions.jobs.processes import JobProcesses
from functions.samples import SAMPLE_ACCOUNT_SID, SAMPLE_AUTH_TOKEN, twilio_signature
from media_nodes.simulator.caller import Say, SimulatedCaller
from shared.cache import NodeInfo, NodeRegistry
from shared.cache.redis import RedisCache
from tests.functions.conftest import FakeTwilio, Recorded, Tenant, call_sid, make_agent, phone
from tests.media.conftest import NodeFactory, models, start_node  # noqa: F401
from tests.media.test_voicemail_detection import silence, spoken, tone

pytestmark = pytest.mark.integration

CALLS = f"/2010-04-01/Accounts/{SAMPLE_ACCOUNT_SID}/Calls"
VOICEMAIL_MESSAGE = "Hi, this is Acme calling about your order. Please call us back."


Workers = JobProcesses


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
        # A dial claimed by a killed worker and never sent is lost after this (and dialled
        # again): long enough for a loaded machine's callbacks, short for the tests' waits.
        "PARLEY_CAMPAIGN_DIAL_STALE_S": "20",
        "PARLEY_TWILIO_ACCOUNT_SID": SAMPLE_ACCOUNT_SID,
        "PARLEY_TWILIO_AUTH_TOKEN": SAMPLE_AUTH_TOKEN,
        "PARLEY_TWILIO_API_BASE": fake_twilio.base_url,
        "PARLEY_PUBLIC_BASE_URL": live_api,
        "PARLEY_SESSION_TOKEN_SECRET": "test-session-secret",
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    group = Workers(env, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        if os.environ.get("PARLEY_TEST_SHOW_WORKER_LOGS"):
            print(group.logs())


def _post_signed(url: str, form: dict[str, str]) -> None:
    """A Twilio callback: form-encoded, signed over the exact URL with its query."""
    signature = twilio_signature(url, form, SAMPLE_AUTH_TOKEN)
    reply = httpx.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=30)
    assert reply.status_code == 204, reply.text


Script = Callable[[Recorded, str], None]

GREETING = "Hi, you've reached Sam. Please leave a message after the tone."
NODE_ID = "campaign-node"


@pytest.fixture
def media_node(
    rt: Any,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    start_node: NodeFactory,  # noqa: F811
) -> Iterator[str]:
    """A real media node on its own thread and loop, reading agents from this test's database,
    projecting its events into it, registered in Redis where the voice webhook picks nodes, and
    sharing stream claims and machine verdicts there with the functions. Yields its ws:// base."""
    ready, stop = threading.Event(), threading.Event()
    found: dict[str, str] = {}
    secret = rt.settings.session_token_secret.get_secret_value()

    async def serve() -> None:
        cache = RedisCache(redis_url, key_prefix=redis_prefix)
        # A long expiry: on a loaded CI machine a late heartbeat must not drop the only node
        # (the calls would get the no-capacity TwiML); node expiry is tested on its own.
        registry = NodeRegistry(cache, ttl_s=120)
        try:
            async with start_node(
                project=True,
                agents_from_db=True,
                registry=registry,
                session_token_secret=secret,
                node_id=NODE_ID,
                media_max_calls=16,
            ) as running:
                base = running.url.removesuffix("/twilio/stream")
                # Its own heartbeat announces this address from now on.
                running.node.settings = running.node.settings.model_copy(
                    update={"media_public_url": base}
                )
                await registry.heartbeat(NodeInfo(NODE_ID, base, capacity=16, active_calls=0))
                found["url"] = base
                ready.set()
                while not stop.is_set():  # noqa: ASYNC110 - the stop comes from another thread
                    await asyncio.sleep(0.1)
        finally:
            ready.set()
            await cache.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(120) and "url" in found, "the media node did not start"
    yield found["url"]
    stop.set()
    thread.join(timeout=60)


class Line:
    """What Twilio does with an answered call: fetch its TwiML from the voice webhook and stream
    the callee to the media node it names, until either side hangs up (or a new TwiML from the
    AMD callback replaces the stream)."""

    def __init__(self, fake: FakeTwilio) -> None:
        self.streams: dict[str, tuple[asyncio.AbstractEventLoop, SimulatedCaller]] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.greeting = np.concatenate([silence(300), _piper(GREETING)])
        fake.after_update = self._updated

    def _updated(self, request: Recorded, sid: str) -> None:
        if not request.values("Twiml") and not request.values("Status"):
            return
        with self.lock:
            stream = self.streams.get(sid)
        if stream is not None:  # Twilio ends the stream to run the new TwiML
            loop, caller = stream
            loop.call_soon_threadsafe(caller.hang_up)

    def answer(self, request: Recorded, sid: str, callee: str, amd: Callable[[str], None]) -> None:
        """``callee``: "person" (listens to the agent) or "machine" (greets, beeps, records;
        Twilio's async AMD says so once the beep has sounded, as DetectMessageEnd does)."""
        form = {
            "AccountSid": SAMPLE_ACCOUNT_SID,
            "CallSid": sid,
            "From": request.value("From"),
            "To": request.value("To"),
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
        }
        url = request.value("Url")
        reply = httpx.post(
            url,
            data=form,
            headers={"X-Twilio-Signature": twilio_signature(url, form, SAMPLE_AUTH_TOKEN)},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        stream = ET.fromstring(reply.text).find("./Connect/Stream")
        if stream is None:  # Twilio says the TwiML's words and hangs up; the test's counts tell
            self.errors.append(f"{sid}: {reply.text}")
            return
        parameters = {str(p.get("name")): str(p.get("value")) for p in stream.findall("Parameter")}
        asyncio.run(self._stream(str(stream.get("url")), parameters, sid, callee, amd))

    async def _stream(
        self,
        url: str,
        parameters: dict[str, str],
        sid: str,
        callee: str,
        amd: Callable[[str], None],
    ) -> None:
        caller = SimulatedCaller(url, parameters=parameters, call_sid=sid)
        with self.lock:
            self.streams[sid] = (asyncio.get_running_loop(), caller)
        if callee == "person":
            await asyncio.to_thread(amd, "human")
            await caller.run([])  # hears the agent out; the agent ends the call
            return
        beep = Say(np.concatenate([silence(400), tone(1000, 500)]), label="beep", at_once=True)
        steps = [Say(self.greeting, label="greeting", at_once=True), beep]
        # A machine records for minutes; the node hangs up once its message is left.
        steps.append(Say(silence(30000), label="recording", at_once=True))

        async def after_the_beep() -> None:
            # The simulator's turns are polled: it has no event for a step starting.
            while not caller.result.turns or caller.result.turns[-1].label != "recording":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.to_thread(amd, "machine_end_beep")

        verdict = asyncio.create_task(after_the_beep())
        await caller.run(steps)
        verdict.cancel()


def _piper(text: str) -> npt.NDArray[np.int16]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(spoken, text).result()


def play(
    fake: FakeTwilio,
    sql: psycopg.Connection[Any],
    outcomes: dict[str, list[str]],
    line: Line | None = None,
) -> None:
    """After each dial, play what happens to that number's next call, from ``outcomes``:
    answered (a person; the agent resolves it), busy, no-answer, voicemail (a machine; AMD says
    so). With a ``line``, answered calls stream to the media node; without, the callbacks only."""
    counters: Counter[str] = Counter()
    lock = threading.Lock()
    failures = line.errors if line is not None else []

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

            def amd(answer: str) -> None:
                _post_signed(amd_url, base | {"AnsweredBy": answer})

            if line is not None:
                callee = "machine" if what == "voicemail" else "person"
                try:
                    line.answer(request, sid, callee, amd)
                finally:  # whatever happened on the line, the call ends
                    status("completed", 3, CallDuration="5")
                return
            if what == "voicemail":
                _post_signed(amd_url, base | {"AnsweredBy": "machine_end_beep"})
            else:
                _post_signed(amd_url, base | {"AnsweredBy": "human"})
                # The agent's end state, as the media node's events would project it.
                sql.execute(
                    "UPDATE calls SET disposition = 'resolved' WHERE twilio_call_sid = %s", (sid,)
                )
            status("completed", 3, CallDuration="20")

        def guarded() -> None:
            try:
                run()
            except Exception as exc:  # a thread's exception would otherwise only warn
                failures.append(f"{sid} ({what}): {type(exc).__name__}: {exc}")

        threading.Thread(target=guarded, daemon=True).start()

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


def _all_day_campaign(
    api: httpx.Client,
    name: str,
    numbers: list[str],
    *,
    concurrency: int,
    cps: float,
    retry: dict[str, dict[str, float]],
) -> str:
    """A campaign of the acme-shop agent calling ``numbers`` (UTC) at any hour of any day."""
    created = api.post(
        "/v1/campaigns",
        json={
            "name": name,
            "agent_id": "acme-shop",
            "window": {"start": "00:00:00", "end": "23:59:59", "days": [1, 2, 3, 4, 5, 6, 7]},
            "max_concurrency": concurrency,
            "calls_per_second": cps,
            "retry": retry,
            "contacts": [{"number": n, "timezone": "UTC"} for n in numbers],
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["campaign_id"])


def _local_zone(hour: int) -> str:
    """An Etc/GMT zone where it is now about ``hour`` o'clock."""
    offset = (hour - datetime.now(UTC).hour + 12) % 24 - 12  # -12 .. 11
    return "Etc/GMT" + (f"-{offset}" if offset > 0 else f"+{-offset}") if offset else "Etc/GMT"


def _wait(
    check: Callable[[], bool],
    seconds: float,
    what: str,
    workers: Workers,
    state: Callable[[], object] = lambda: "",
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\nstate: {state()}\n{workers.logs()}")


def _wait_completed(api: httpx.Client, campaign_id: str, workers: Workers) -> None:
    def completed() -> bool:
        return api.get(f"/v1/campaigns/{campaign_id}").json()["status"] == "completed"

    _wait(completed, 60, "the campaign to complete", workers)


def _creates(fake: FakeTwilio) -> list[Recorded]:
    with fake.lock:
        return [r for r in fake.requests if r.path == CALLS + ".json"]


# The test's own waits give up first, with the campaign's state and the workers' logs.
@pytest.mark.timeout(540)
def test_a_campaign_of_50_contacts_with_mixed_outcomes(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    live_api: str,
    fake_twilio: FakeTwilio,
    workers: Workers,
    media_node: str,
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
    line = Line(fake_twilio)
    play(fake_twilio, sql, outcomes, line)
    api = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=30)

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

    doomed = workers.start("worker", "--concurrency=4")
    workers.start("worker", "--concurrency=4")
    workers.start("beat")
    started = api.post(f"/v1/campaigns/{campaign_id}/start")
    assert started.status_code == 200 and started.json()["status"] == "running"

    # Mid-run, one worker dies with whatever it holds; a replacement joins.
    _wait(lambda: len(_creates(fake_twilio)) >= 12, 60, "a dozen dials", workers)
    workers.kill(doomed)
    workers.start("worker", "--concurrency=4")

    def settled() -> bool:
        progress = api.get(f"/v1/campaigns/{campaign_id}/progress").json()
        contacts = progress["contacts"]
        done = contacts.get("done", 0) == 48 and contacts.get("skipped", 0) == 1
        # The calls' dispositions come from the media node's events, projected asynchronously.
        return done and sum(progress["dispositions"].values()) == 36

    def state() -> object:
        progress = api.get(f"/v1/campaigns/{campaign_id}/progress").json()
        return {"progress": progress, "line errors": line.errors}

    # Generous: on a loaded 2-core machine 36 calls through real models take their time.
    _wait(settled, 300, "48 contacts done", workers, state)
    progress = api.get(f"/v1/campaigns/{campaign_id}/progress").json()
    assert progress["status"] == "running"  # the one outside its window still waits
    assert line.errors == []
    assert progress["contacts"] == {"done": 48, "skipped": 1, "pending": 1}
    assert progress["outcomes"] == {"answered": 24, "no_answer": 12, "voicemail": 12, "dnc": 1}
    assert progress["dispositions"] == {"resolved": 24, "voicemail": 12}
    attempts = progress["attempts"]
    # A dial claimed by the killed worker but not yet sent is never sent: it ends lost, and its
    # contact is dialled again (the count says how many were; the outcomes are unchanged).
    lost = attempts.pop("lost", 0)
    assert attempts == {"answered": 24, "busy": 12, "no_answer": 24, "voicemail": 12}, lost

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

    # Every answered call streamed to the media node: the agent spoke, its events are stored.
    calls = sql.execute(
        """SELECT c.to_number, c.disposition, c.node_id, c.twilio_call_sid,
                  array_agg(t.text ORDER BY t.turn_index) FILTER (WHERE t.speaker = 'agent')
                      AS agent
           FROM calls c LEFT JOIN call_turns t ON t.call_id = c.call_id
           WHERE c.tenant_id = %s AND c.status = 'completed' GROUP BY c.call_id""",
        (tenant.tenant_id,),
    ).fetchall()
    assert len(calls) == 36 and {c["node_id"] for c in calls} == {NODE_ID}
    # Each voicemail got the agent's message once, from whichever heard the machine first:
    # the media node (after the beep) or Twilio's AMD (its TwiML replaced the stream).
    updates = {
        r.path.rsplit("/", 1)[1].removesuffix(".json"): r
        for r in fake_twilio.requests
        if r.path != CALLS + ".json"
    }
    machines = [c for c in calls if outcomes[c["to_number"]][0] == "voicemail"]
    assert len(machines) == 12 and {c["disposition"] for c in machines} == {"voicemail"}
    for c in machines:
        by_node = VOICEMAIL_MESSAGE in c["agent"]
        by_twilio = c["twilio_call_sid"] in updates
        answered_by = sql.execute(
            "SELECT answered_by FROM campaign_attempts WHERE call_sid = %s",
            (c["twilio_call_sid"],),
        ).fetchone()
        assert by_node != by_twilio, (
            f"{c['twilio_call_sid']} ({c['to_number']}): node's verdict "
            f"{answered_by}, agent said {c['agent']!r}, Twilio updated {by_twilio}"
        )
        if by_twilio:
            twiml = ET.fromstring(updates[c["twilio_call_sid"]].value("Twiml"))
            assert [e.tag for e in twiml] == ["Say", "Hangup"]
            assert twiml.find("Say").text == VOICEMAIL_MESSAGE  # type: ignore[union-attr]
    people = [c for c in calls if outcomes[c["to_number"]][-1] == "answered"]
    assert {c["disposition"] for c in people} == {"resolved"}
    # A person hears the agent out. (A machine that talks from its first 300 ms may hear no
    # word of the greeting, and Twilio's verdict may come before the node's.)
    assert all(c["agent"] for c in people), people
    assert all(c["twilio_call_sid"] not in updates for c in people)

    # The contact's variables ride on its attempt for the agent ({{ vars.first_name }}).
    row = sql.execute(
        "SELECT k.variables FROM campaign_contacts k WHERE k.number = %s", (numbers[0],)
    ).fetchone()
    assert row == {"variables": {"first_name": "Ann0"}}

    # Cancel: the contact outside its window is over too, and the campaign with it.
    assert api.post(f"/v1/campaigns/{campaign_id}/cancel").json()["status"] == "canceled"
    contacts = api.get(f"/v1/campaigns/{campaign_id}/progress").json()["contacts"]
    assert contacts == {"done": 48, "skipped": 1, "canceled": 1}


def test_voicemail_hang_up_and_pause_resume_cancel_while_workers_run(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    live_api: str,
    fake_twilio: FakeTwilio,
    workers: Workers,
    media_node: str,
) -> None:
    """Every callee a machine, the agent's voicemail setting the default (hang up): each call
    ends on the machine verdict with no message, whichever decided. Paused, no new call goes
    out; resumed, they do; canceled, the rest never do."""
    make_agent(sql, tenant.tenant_id, number=phone())
    numbers = [f"+1555030{i:04d}" for i in range(8)]
    line = Line(fake_twilio)
    play(fake_twilio, sql, {n: ["voicemail"] for n in numbers}, line)
    api = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=30)
    campaign_id = _all_day_campaign(
        api,
        "machines",
        numbers,
        concurrency=2,
        cps=5,
        retry={"voicemail": {"max_attempts": 1, "backoff_s": 0}},
    )
    workers.start("worker", "--concurrency=2")
    workers.start("beat")
    api.post(f"/v1/campaigns/{campaign_id}/start").raise_for_status()
    _wait(lambda: len(_creates(fake_twilio)) >= 2, 60, "the first dials", workers)

    assert api.post(f"/v1/campaigns/{campaign_id}/pause").json()["status"] == "paused"
    time.sleep(1.5)  # a dial already claimed when the pause came still goes out
    paused_at = len(_creates(fake_twilio))
    time.sleep(3)
    assert len(_creates(fake_twilio)) == paused_at, "a call went out while paused"
    assert api.post(f"/v1/campaigns/{campaign_id}/resume").json()["status"] == "running"

    def four_done() -> bool:
        contacts = api.get(f"/v1/campaigns/{campaign_id}/progress").json()["contacts"]
        return contacts.get("done", 0) >= 4

    _wait(four_done, 60, "four contacts done", workers)
    assert api.post(f"/v1/campaigns/{campaign_id}/cancel").json()["status"] == "canceled"
    time.sleep(1.5)
    canceled_at = len(_creates(fake_twilio))

    def calls_over() -> bool:
        contacts = api.get(f"/v1/campaigns/{campaign_id}/progress").json()["contacts"]
        return set(contacts) <= {"done", "canceled"}

    _wait(calls_over, 60, "the calls in progress to end", workers)
    time.sleep(2)
    assert len(_creates(fake_twilio)) == canceled_at, "a call went out after the cancel"
    progress = api.get(f"/v1/campaigns/{campaign_id}/progress").json()
    dialled = len({r.value("To") for r in _creates(fake_twilio)})
    assert dialled == canceled_at and 4 <= dialled < 8
    assert line.errors == []
    # A call still out when the campaign was canceled ends its contact canceled.
    done = progress["contacts"]["done"]
    assert done >= 4 and progress["contacts"] == {"done": done, "canceled": 8 - done}
    assert progress["outcomes"] == {"voicemail": done}
    assert progress["attempts"].get("voicemail") == dialled, progress

    def dispositions() -> list[dict[str, Any]]:
        return sql.execute(
            """SELECT c.twilio_call_sid, c.disposition, c.end_reason,
                      array_agg(t.text) FILTER (WHERE t.speaker = 'agent') AS agent
               FROM calls c LEFT JOIN call_turns t ON t.call_id = c.call_id
               WHERE c.tenant_id = %s GROUP BY c.call_id""",
            (tenant.tenant_id,),
        ).fetchall()

    _wait(
        lambda: [c["disposition"] for c in dispositions()] == ["voicemail"] * dialled,
        20,
        "the dispositions",
        workers,
    )
    updates = {
        r.path.rsplit("/", 1)[1].removesuffix(".json"): r
        for r in fake_twilio.requests
        if r.path != CALLS + ".json"
    }
    for c in dispositions():
        assert VOICEMAIL_MESSAGE not in (c["agent"] or []), c
        update = updates.get(c["twilio_call_sid"])
        # Twilio's AMD decided (and hung up through the API), or the media node did (and
        # closed the stream): never both.
        assert update is None or (update.values("Status") == ["completed"]), c


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
    api = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=30)
    campaign_id = _all_day_campaign(
        api,
        "kill",
        numbers,
        concurrency=2,
        cps=10,
        retry={"failed": {"max_attempts": 1, "backoff_s": 0}},
    )
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

    _wait_completed(api, campaign_id, workers)
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


def test_a_dial_its_worker_died_with_is_dialled_again(
    rt: Any,
    run: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    live_api: str,
    fake_twilio: FakeTwilio,
    workers: Workers,
) -> None:
    """A worker claimed a dial and died before sending it: after the stale period the attempt
    is lost, it does not count toward the retry rule, and the contact is dialled again once,
    as a new attempt."""
    make_agent(sql, tenant.tenant_id, number=phone())
    number = "+15550400001"
    play(fake_twilio, sql, {number: ["busy", "answered"]})
    api = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=30)
    campaign_id = _all_day_campaign(
        api,
        "lost",
        [number],
        concurrency=1,
        cps=10,
        retry={"busy": {"max_attempts": 2, "backoff_s": 0}},  # no rule for failed
    )
    api.post(f"/v1/campaigns/{campaign_id}/start").raise_for_status()

    async def claim_and_die() -> str:
        # What a worker does before it asks Twilio, then nothing: it was killed right there.
        now = datetime.now(UTC)
        async with db() as conn:
            queued = await store.dispatch(
                conn, campaign_id, now=now, tick_s=1, tenant_default_max=20
            )
            await conn.commit()
            assert len(queued) == 1
            assert await store.claim(conn, queued[0].attempt_id, now=now) is not None
        return queued[0].attempt_id

    lost_id = run(claim_and_die())
    workers.env["PARLEY_CAMPAIGN_DIAL_STALE_S"] = "1"
    workers.start("worker", "--concurrency=2")
    workers.start("beat")

    _wait_completed(api, campaign_id, workers)
    rows = sql.execute(
        "SELECT attempt_id, attempt_no, outcome FROM campaign_attempts "
        "WHERE campaign_id = %s ORDER BY attempt_no",
        (campaign_id,),
    ).fetchall()
    # Busy then answered: the lost attempt took none of the two the busy rule allows.
    assert [(r["attempt_no"], r["outcome"]) for r in rows] == [
        (1, "lost"),
        (2, "busy"),
        (3, "answered"),
    ]
    assert rows[0]["attempt_id"] == lost_id
    assert Counter(r.value("To") for r in _creates(fake_twilio)) == {number: 2}
    contact = sql.execute(
        "SELECT state, attempts, last_outcome FROM campaign_contacts WHERE campaign_id = %s",
        (campaign_id,),
    ).fetchone()
    assert contact == {"state": "done", "attempts": 2, "last_outcome": "answered"}
    progress = api.get(f"/v1/campaigns/{campaign_id}/progress").json()
    assert progress["failures"] == {"no word of the call after it was claimed": 1}


def test_failed_dials_say_why_in_the_progress(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    other_tenant: Tenant,
    live_api: str,
    fake_twilio: FakeTwilio,
    workers: Workers,
) -> None:
    _agent_with_voicemail(sql, tenant)
    fake_twilio.fail_with = 400  # Twilio refuses every dial: "Invalid 'To' Phone Number"
    numbers = [f"+1555030{i:04d}" for i in range(3)]
    api = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=30)
    campaign_id = _all_day_campaign(
        api,
        "refused",
        numbers,
        concurrency=3,
        cps=10,
        retry={"failed": {"max_attempts": 2, "backoff_s": 0.2}},
    )
    workers.start("worker", "--concurrency=2")
    workers.start("beat")
    api.post(f"/v1/campaigns/{campaign_id}/start").raise_for_status()

    _wait_completed(api, campaign_id, workers)
    progress = api.get(f"/v1/campaigns/{campaign_id}/progress").json()
    assert progress["outcomes"] == {"failed": 3}
    assert progress["attempts"] == {"failed": 6}  # each number retried once, as configured
    reason = "Twilio answered 400: Unable to create record: Invalid 'To' Phone Number"
    assert progress["failures"] == {reason: 6}

    # Which contacts, and each attempt's error, a page at a time.
    page = api.get(f"/v1/campaigns/{campaign_id}/contacts", params={"limit": 2}).json()
    rest = api.get(
        f"/v1/campaigns/{campaign_id}/contacts", params={"limit": 2, "after": page["next"]}
    ).json()
    assert page["next"] and rest["next"] is None
    contacts = page["contacts"] + rest["contacts"]
    assert sorted(c["number"] for c in contacts) == numbers
    for contact in contacts:
        assert (contact["state"], contact["last_outcome"]) == ("done", "failed")
        tries = contact["attempts"]
        assert [(a["attempt_no"], a["outcome"], a["error"]) for a in tries] == [
            (1, "failed", reason),
            (2, "failed", reason),
        ]
        assert all(a["call_sid"] is None and a["finished_at"] for a in tries)
    listed = api.get(
        f"/v1/campaigns/{campaign_id}/contacts", params=[("outcome", "answered")]
    ).json()
    assert listed == {"contacts": [], "next": None}
    wrong = api.get(f"/v1/campaigns/{campaign_id}/contacts", params={"outcome": "exploded"})
    assert wrong.status_code == 422 and "exploded" in wrong.text
    assert api.get("/v1/campaigns/nope/contacts").status_code == 404
    theirs = {"Authorization": other_tenant.auth}
    assert api.get(f"/v1/campaigns/{campaign_id}/contacts", headers=theirs).status_code == 404


def test_parley_campaign_run_prints_progress_until_the_campaign_is_over(
    rt: Any,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    fake_twilio: FakeTwilio,
    workers: Workers,
    tmp_path: Any,
) -> None:
    _agent_with_voicemail(sql, tenant)
    numbers = [f"+1555040{i:04d}" for i in range(3)]
    play(fake_twilio, sql, {numbers[0]: ["answered"], numbers[1]: ["busy"], numbers[2]: ["busy"]})
    csv_file = tmp_path / "reminders.csv"
    csv_file.write_text("number,first_name\n" + "".join(f"{n},Ann\n" for n in numbers))
    command = [sys.executable, "-m", "parley", "campaign", "run", str(csv_file)]
    command += ["--agent", "acme-shop", "--tenant", tenant.tenant_id, "--cps", "10"]
    command += ["--interval", "0.5", "--timezone", "UTC", "--retry", "busy=1/0"]
    # It starts its own worker and beat (its children: one process group to clean up).
    cli = subprocess.Popen(
        command,
        env=workers.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = cli.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cli.pid, signal.SIGKILL)
    assert cli.returncode == 0, out
    lines = out.splitlines()
    started = [x for x in lines if x.startswith("campaign cmp_")]
    assert started and started[0].endswith(": 3 contacts, started"), out
    progress = [x for x in lines if x.startswith(("running:", "completed:"))]
    assert progress[-1] == (
        "completed: contacts [done 3] outcomes [answered 1, busy 2] dispositions [resolved 1]"
    ), out
    assert len(progress) >= 2, out  # a line every half second while it ran

    # A CSV it cannot take: one clear line and a non-zero exit, no traceback.
    bad = tmp_path / "bad.csv"
    bad.write_text("number\n12345\n")
    refused = subprocess.run(
        [*command[:5], str(bad), *command[6:], "--no-start-worker"],
        env=workers.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr + refused.stdout
    assert "12345" in refused.stderr + refused.stdout, refused.stderr
    wrong = subprocess.run(
        [*command, "--retry", "busy=often"], env=workers.env, capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "expected OUTCOME=ATTEMPTS/BACKOFF_S" in wrong.stderr


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
    api = httpx.Client(base_url=live_api, headers={"Authorization": tenant.auth}, timeout=30)
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
