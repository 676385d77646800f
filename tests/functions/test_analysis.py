"""Post-call analysis on the real PostgreSQL: the consumer asks for it when a call ends, a job
worker's run stores version 1 (and the call.analyzed webhook with it), a re-run adds version 2,
the API serves the latest, the filters read it in the list, the aggregate and the export; an
extraction that breaks the agent's schema is a recorded failure; the LLM path against the real
local model (llama-cpp + SmolLM2) and against an LLM that is down; and the local model's
accuracy on the labelled set of tests/functions/data/labelled_calls.json."""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from functions.admin.app import handler as admin
from functions.analysis import worker
from functions.analysis.analyze import CallTranscript, analyze
from functions.analysis.local_model import LocalJudge
from functions.analytics.app import handler as analytics
from functions.common.config import FunctionSettings
from functions.consumer.processor import BatchProcessor
from functions.samples import load_sample
from media_nodes.dialogue.llm import LlmClient
from shared.agents.models import Analysis
from shared.bus import ReceivedRecord
from shared.db import create_pool
from shared.events import (
    CallEnded,
    CallStarted,
    DispositionSet,
    Event,
    SlotFilled,
    TurnAgent,
    TurnUser,
)
from tests.functions.conftest import Tenant, api_event, invoke
from tests.functions.conftest import api_request as api

DATA = Path(__file__).parent / "data"
# The local model's accuracy (sentiment, success) on the two labelled sets, as measured
# (docs/api.md): set A (46 calls) was written first and its misses led to the last change of the
# prototypes (sarcastic praise, polite goodbyes), so set B (30 calls) was written after that
# change and never used to make one. The floors sit a little under what the model scored, so a
# change that makes it worse fails here.
FLOORS = {
    "labelled_calls.json": (0.65, 0.72),  # measured 31/46 = 0.674, 34/46 = 0.739
    "labelled_calls_b.json": (0.63, 0.60),  # measured 20/30 = 0.667, 19/30 = 0.633
}

SCHEMA = {
    "type": "object",
    "properties": {
        "order_number": {"type": "integer", "minimum": 1000, "maximum": 99999},
        "wants_callback": {"type": "boolean"},
    },
    "required": ["order_number"],
    "additionalProperties": False,
}
ANALYSIS = {
    "rubric": "The caller learned where their order is.",
    "success_criteria": ["The agent read back the order's status."],
    "summary_prompt": "Mention the order number.",
    "extraction_schema": SCHEMA,
}


def agent_with_analysis(sql: psycopg.Connection[Any], tenant_id: str, **changes: Any) -> None:
    definition = json.loads(load_sample("admin.post-v1-agents.json")["body"])["definition"]
    definition["id"] = "acme-shop"
    definition["analysis"] = {**ANALYSIS, **changes}
    sql.execute(
        "INSERT INTO agents (tenant_id, agent_id, name, active_version) "
        "VALUES (%s, 'acme-shop', 'Acme', 1)",
        (tenant_id,),
    )
    sql.execute(
        "INSERT INTO agent_versions (tenant_id, agent_id, version, definition) "
        "VALUES (%s, 'acme-shop', 1, %s)",
        (tenant_id, json.dumps(definition)),
    )


def call(tenant_id: str, caller: list[str], slots: dict[str, Any]) -> list[Event]:
    call_id = f"an-{uuid.uuid4().hex[:10]}"
    payloads: list[Any] = [CallStarted(agent_id="acme-shop", agent_version=1)]
    for i, text in enumerate(caller):
        payloads.append(
            TurnAgent(turn_index=i, text=f"agent says {i}", start_ms=i * 10, end_ms=i * 10 + 4)
        )
        payloads.append(TurnUser(turn_index=i, text=text, start_ms=i * 10 + 5, end_ms=i * 10 + 9))
    for name, value in slots.items():
        payloads.append(SlotFilled(turn_index=0, name=name, value=value, slot_type="digits"))
    payloads.append(DispositionSet(disposition="resolved", summary="template words", slots=slots))
    payloads.append(CallEnded(reason="hangup", duration_ms=60_000))
    return [
        Event(tenant_id=tenant_id, call_id=call_id, seq=i, payload=p)
        for i, p in enumerate(payloads)
    ]


def project(run: Any, database_url: str, events: list[Event]) -> None:
    records = [
        ReceivedRecord("t", 0, i, e.call_id.encode(), e.to_json()) for i, e in enumerate(events)
    ]

    async def apply() -> None:
        pool = await create_pool(database_url, max_size=2)
        try:
            await BatchProcessor(pool).process(records)
        finally:
            await pool.close()

    run(apply())


def run_pending(
    run: Any, settings: FunctionSettings, sql: psycopg.Connection[Any], tenant_id: str
) -> list[str]:
    """What the beat's sweep and the tasks it sends do, in this process; what became of the
    tenant's requests (other tests' calls in this database are analysed too)."""
    leased = run(worker.sweep(settings))
    mine = {
        r["request_id"]
        for r in sql.execute(
            "SELECT request_id FROM call_analysis_requests WHERE tenant_id = %s", (tenant_id,)
        ).fetchall()
    }
    results = [(item.request_id, run(worker.run(settings, item))) for item in leased]
    return [outcome for request_id, outcome in results if request_id in mine]


HAPPY = ["Where is my order?", "It's 4572.", "Brilliant, today then. Thanks so much, that's all."]
ANGRY = ["My order never came.", "4573.", "This is useless, you people never help. I'm done."]


def test_an_ended_call_is_analysed_by_a_worker_and_re_runs_add_versions(
    rt: Any,
    database_url: str,
    sql: psycopg.Connection[Any],
    tenant: Tenant,
    other_tenant: Tenant,
    run: Any,
) -> None:
    agent_with_analysis(sql, tenant.tenant_id)
    hook = api_event(
        "admin.get-v1-webhooks.json",
        tenant,
        path="/v1/webhooks",
        body={"url": "https://hooks.example.com/p", "events": ["call.analyzed"]},
    )
    hook["requestContext"]["http"]["method"] = "POST"
    assert invoke(admin, hook).status == 201
    happy = call(tenant.tenant_id, HAPPY, {"order_number": "4572"})
    angry = call(tenant.tenant_id, ANGRY, {"order_number": "4573"})
    happy_id, angry_id = happy[0].call_id, angry[0].call_id
    project(run, database_url, happy + angry)
    project(run, database_url, happy)  # a replay asks for nothing more
    requests = sql.execute(
        "SELECT call_id, reason FROM call_analysis_requests WHERE tenant_id = %s",
        (tenant.tenant_id,),
    ).fetchall()
    assert sorted(r["call_id"] for r in requests) == sorted([happy_id, angry_id])
    assert {r["reason"] for r in requests} == {"ended"}
    # Before a worker ran: pending, nothing to filter on yet.
    state = api(analytics, "GET", f"/v1/calls/{happy_id}/analysis", tenant).json()
    assert state["status"] == "pending" and state["analysis"] is None

    assert sorted(run_pending(run, rt.settings, sql, tenant.tenant_id)) == ["stored", "stored"]
    assert (
        run_pending(run, rt.settings, sql, tenant.tenant_id) == []
    )  # done: a later sweep finds nothing
    state = api(analytics, "GET", f"/v1/calls/{happy_id}/analysis", tenant).json()
    first = state["analysis"]
    assert state["status"] == "analyzed" and state["versions"] == [1]
    assert first["method"] == "local" and "MiniLM" in first["model"]
    assert first["summary"] == "template words"
    assert first["sentiment"] == "positive" and first["sentiment_score"] > 0
    assert first["success"] is True and "resolved" in first["success_reason"]
    # The slot is text; the schema wants an integer: the local extraction turns it into one.
    assert first["extracted"] == {"order_number": 4572} and first["extraction_valid"] is True
    sad = api(analytics, "GET", f"/v1/calls/{angry_id}/analysis", tenant).json()["analysis"]
    assert sad["sentiment"] == "negative" and sad["success"] is False

    detail = api(analytics, "GET", f"/v1/calls/{happy_id}", tenant).json()
    assert detail["analysis"]["version"] == 1 and detail["analysis"]["sentiment"] == "positive"
    # call.analyzed carries the stored analysis.
    payloads = [
        r["payload"]
        for r in sql.execute(
            "SELECT payload FROM webhook_deliveries WHERE tenant_id = %s AND event_type = "
            "'call.analyzed' ORDER BY created_at",
            (tenant.tenant_id,),
        ).fetchall()
    ]
    assert len(payloads) == 2
    by_call = {p["data"]["call_id"]: p["data"] for p in payloads}
    assert by_call[happy_id]["analysis"]["version"] == 1
    assert by_call[happy_id]["analysis"]["extracted"] == {"order_number": 4572}
    assert by_call[angry_id]["analysis"]["sentiment"] == "negative"
    assert by_call[happy_id]["disposition"] == "resolved"

    # Filters: the list, the aggregate and the export read the latest analysis.
    def listed(**query: Any) -> set[str]:
        reply = api(analytics, "GET", "/v1/calls", tenant, **query)
        assert reply.status == 200, reply.body
        return {c["call_id"] for c in reply.json()["items"]}

    assert listed(sentiment="positive") == {happy_id}
    assert listed(sentiment=["positive", "negative"]) == {happy_id, angry_id}
    assert listed(success="false") == {angry_id}
    assert listed(extracted="order_number:4573") == {angry_id}
    assert listed(extracted="wants_callback") == set()
    assert listed(analyzed="true") == {happy_id, angry_id}
    counted = api(analytics, "GET", "/v1/calls/aggregate", tenant, success="true").json()
    assert counted["total_calls"] == 1
    exported = api(
        analytics, "GET", "/v1/calls/export", tenant, format="jsonl", sentiment="negative"
    )
    rows = [json.loads(line) for line in exported.body.splitlines()]
    assert [r["call_id"] for r in rows] == [angry_id]
    assert rows[0]["success"] is False and rows[0]["extracted"] == {"order_number": 4573}
    assert rows[0]["analysis_version"] == 1
    bad = api(analytics, "GET", "/v1/calls", tenant, sentiment="furious")
    assert bad.status == 422
    assert api(analytics, "GET", "/v1/calls", tenant, extracted="Bad Name").status == 422

    # A re-run: 202, then the worker adds version 2; version 1 stays readable and unchanged.
    again = api(analytics, "POST", f"/v1/calls/{happy_id}/analysis", tenant)
    assert again.status == 202, again.body
    assert again.json()["status"] == "queued"
    assert again.headers["location"] == f"/v1/calls/{happy_id}/analysis"
    twice = api(analytics, "POST", f"/v1/calls/{happy_id}/analysis", tenant)
    assert twice.json()["request_id"] == again.json()["request_id"]  # one waiting re-run
    assert run_pending(run, rt.settings, sql, tenant.tenant_id) == ["stored"]
    state = api(analytics, "GET", f"/v1/calls/{happy_id}/analysis", tenant).json()
    assert state["versions"] == [1, 2] and state["analysis"]["version"] == 2
    old = api(analytics, "GET", f"/v1/calls/{happy_id}/analysis", tenant, version="1").json()
    assert old["analysis"] == first
    assert (
        api(analytics, "GET", f"/v1/calls/{happy_id}/analysis", tenant, version="3").status == 404
    )
    assert len(sql.execute(
        "SELECT 1 FROM webhook_deliveries WHERE call_id = %s AND event_type = 'call.analyzed'",
        (happy_id,),
    ).fetchall()) == 2  # fmt: skip
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        sql.execute(
            "UPDATE call_analyses SET sentiment = 'negative' WHERE call_id = %s", (happy_id,)
        )

    # A call still going on is analysed once it ends, not before.
    live = call(tenant.tenant_id, HAPPY, {})[:-1]
    project(run, database_url, live)
    early = api(analytics, "POST", f"/v1/calls/{live[0].call_id}/analysis", tenant)
    assert early.status == 409 and "has not ended" in early.body

    # Unknown and other tenants' calls: 404, nothing queued.
    for who, call_id in ((tenant, "no-such-call"), (other_tenant, happy_id)):
        assert api(analytics, "POST", f"/v1/calls/{call_id}/analysis", who).status == 404
        assert api(analytics, "GET", f"/v1/calls/{call_id}/analysis", who).status == 404
    assert listed() >= {happy_id, angry_id}

    # Deleting a call takes its analyses and requests with it (they hold what was said).
    assert api(admin, "DELETE", f"/v1/calls/{happy_id}", tenant).status == 200
    for table in ("call_analyses", "call_analysis_requests"):
        left = sql.execute(f"SELECT count(*) AS n FROM {table} WHERE call_id = %s", (happy_id,))
        assert left.fetchone() == {"n": 0}, table


def test_fields_that_break_the_schema_are_a_recorded_failure(
    rt: Any, database_url: str, sql: psycopg.Connection[Any], tenant: Tenant, run: Any
) -> None:
    agent_with_analysis(sql, tenant.tenant_id)
    events = call(tenant.tenant_id, HAPPY, {"order_number": "12"})  # under the minimum
    project(run, database_url, events)
    assert run_pending(run, rt.settings, sql, tenant.tenant_id) == ["stored"]
    got = api(analytics, "GET", f"/v1/calls/{events[0].call_id}/analysis", tenant).json()
    analysis = got["analysis"]
    assert analysis["extraction_valid"] is False and analysis["extracted"] == {}
    assert any("order_number" in e and "12" in e for e in analysis["extraction_errors"])
    [failure] = analysis["failures"]
    assert failure["part"] == "extraction" and failure["kind"] == "schema"
    assert json.loads(failure["value"]) == {"order_number": 12}
    # Sentiment and success are still there: one part's failure is not the analysis'.
    assert analysis["sentiment"] == "positive" and analysis["success"] is True


def test_an_agent_with_a_broken_extraction_schema_is_refused(tenant: Tenant, rt: Any) -> None:
    body = json.loads(load_sample("admin.post-v1-agents.json")["body"])
    for schema in (
        {"type": "object", "properties": {"n": {"type": "integr"}}},  # no such type
        {"type": "array", "items": {}},  # not an object of fields
        {"type": "object", "properties": {"n": {"$ref": "https://example.com/s.json"}}},
    ):
        changed = copy.deepcopy(body)
        changed["definition"]["analysis"] = {"extraction_schema": schema}
        event = api_event("admin.post-v1-agents.json", tenant, body=changed)
        reply = invoke(admin, event)
        assert reply.status == 422, reply.body
        assert "extraction_schema" in reply.body


@pytest.mark.parametrize("labelled_set", sorted(FLOORS))
def test_the_local_model_on_the_labelled_calls(labelled_set: str) -> None:
    from shared.knowledge.embedder import get_embedder

    judge = LocalJudge(get_embedder())
    calls = json.loads((DATA / labelled_set).read_text())["calls"]
    sentiment_right, success_right = Counter[str](), Counter[str]()
    kinds = Counter(c["kind"] for c in calls)
    misses = []
    for labelled in calls:
        sentiment, success = judge.judge(labelled["caller"])
        if sentiment.label == labelled["sentiment"]:
            sentiment_right[labelled["kind"]] += 1
        else:
            misses.append((labelled["id"], "sentiment", sentiment.label, labelled["sentiment"]))
        if success.success == labelled["success"]:
            success_right[labelled["kind"]] += 1
        else:
            misses.append((labelled["id"], "success", success.success, labelled["success"]))
    sentiment_accuracy = sum(sentiment_right.values()) / len(calls)
    success_accuracy = sum(success_right.values()) / len(calls)
    report = {
        "set": labelled_set,
        "calls": len(calls),
        "sentiment": round(sentiment_accuracy, 3),
        "success": round(success_accuracy, 3),
        "by_kind": {k: (n, sentiment_right[k], success_right[k]) for k, n in sorted(kinds.items())},
        "misses": misses,
    }
    print(json.dumps(report))
    sentiment_floor, success_floor = FLOORS[labelled_set]
    assert sentiment_accuracy >= sentiment_floor, report
    assert success_accuracy >= success_floor, report


def _transcript(caller: list[str], **options: Any) -> CallTranscript:
    turns: list[tuple[str, str]] = []
    for text in caller:
        turns += [("agent", "How can I help?"), ("caller", text)]
    return CallTranscript(
        agent_name="Acme",
        turns=turns,
        slots={"order_number": "4572"},
        template_summary="template words",
        disposition="resolved",
        options=Analysis.model_validate({**ANALYSIS, **options}),
    )


def test_with_the_real_local_llm_every_part_is_asked_of_it(llm_server: str, run: Any) -> None:
    from shared.knowledge.embedder import get_embedder

    llm = LlmClient(base_url=llm_server, api_key="none", model="smollm2", timeout_s=60)
    try:
        result = run(analyze(_transcript(HAPPY), LocalJudge(get_embedder()), llm))
    finally:
        run(llm.aclose())
    assert result.method == "llm" and result.model == "smollm2"
    failed = {f["part"]: f for f in result.failures}
    # The small model answers; each part is its answer or a recorded fallback, never missing.
    if "summary" not in failed:
        assert result.summary and result.summary != "template words"
    if "verdict" not in failed:
        assert result.sentiment in ("positive", "neutral", "negative")
        assert isinstance(result.success, bool) and result.success_reason
    if result.extraction_valid is True:
        assert isinstance(result.extracted.get("order_number"), int)
    else:
        assert failed["extraction"]["kind"] in ("schema", "invalid", "error", "timeout")
        assert result.extracted == {}


def test_an_llm_that_is_down_falls_back_part_by_part(run: Any) -> None:
    from shared.knowledge.embedder import get_embedder

    llm = LlmClient(base_url="http://127.0.0.1:9/v1", api_key="none", model="gone", timeout_s=5)
    try:
        result = run(analyze(_transcript(ANGRY), LocalJudge(get_embedder()), llm))
    finally:
        run(llm.aclose())
    assert result.method == "llm"
    assert [(f["part"], f["kind"], f["used"]) for f in result.failures] == [
        ("summary", "error", "template summary"),
        ("verdict", "error", "local model"),
        ("extraction", "error", "slots"),
    ]
    assert result.summary == "template words"
    assert result.sentiment == "negative" and result.success is False
    assert result.extracted == {"order_number": 4572} and result.extraction_valid is True


def test_a_request_tried_too_often_is_given_up_with_its_error(
    rt: Any, database_url: str, sql: psycopg.Connection[Any], tenant: Tenant, run: Any
) -> None:
    events = call(tenant.tenant_id, HAPPY, {})
    project(run, database_url, events)
    call_id = events[0].call_id
    # As a worker that kept failing leaves it: its tries used up, the last error kept.
    sql.execute(
        "UPDATE call_analysis_requests SET attempts = %s, error = 'RuntimeError: model broke' "
        "WHERE call_id = %s",
        (rt.settings.analysis_max_attempts, call_id),
    )
    assert run_pending(run, rt.settings, sql, tenant.tenant_id) == []
    state = api(analytics, "GET", f"/v1/calls/{call_id}/analysis", tenant).json()
    assert state["status"] == "failed" and state["analysis"] is None
    assert state["request"]["error"].startswith("RuntimeError: model broke (given up after 5")
    # A re-run by hand starts afresh.
    assert api(analytics, "POST", f"/v1/calls/{call_id}/analysis", tenant).status == 202
    assert run_pending(run, rt.settings, sql, tenant.tenant_id) == ["stored"]
    assert api(analytics, "GET", f"/v1/calls/{call_id}/analysis", tenant).json()["status"] == (
        "analyzed"
    )
