"""Log search against a real OpenSearch node (scripts/services start opensearch): the documents
our JSON formatter writes, bulk-loaded as the shipper does, found again by call id."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from typer.testing import CliRunner

from parley.cli import app
from shared.logsearch import JsonLogFormatter, LogSearch, document, saved_searches
from shared.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:19200"


@pytest.fixture(scope="session")
def opensearch() -> str:
    subprocess.run([str(ROOT / "scripts/services"), "start", "opensearch"], check=True, timeout=600)
    LogSearch(URL).install()
    return URL


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonLogFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def collected() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("parley.test.logsearch")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def test_a_calls_log_lines_are_found_by_call_id_with_their_trace_and_no_pii(
    opensearch: str, collected: Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    call_id = f"call_{uuid.uuid4().hex}"
    log = logging.getLogger("parley.test.logsearch")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("call") as span:
        log.info("caller said their number is 415 555 0142", extra={"call_id": call_id})
        log.info(json.dumps({"msg": "turn latency", "call_id": call_id, "tenant_id": "t1"}))
        log.warning("card 4111 1111 1111 1111 refused", extra={"call_id": call_id})
    log.info("another call", extra={"call_id": "call_other"})
    docs = [json.loads(line) for line in collected.lines]
    assert all("555 0142" not in line and "4111" not in line for line in collected.lines)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert [d.get("trace_id") for d in docs[:3]] == [trace_id] * 3 and "trace_id" not in docs[3]

    search = LogSearch(opensearch)
    assert search.bulk(docs, refresh=True) == 4
    hits = search.search(call_id=call_id)
    assert [h["message"] for h in hits] == [d["message"] for d in docs[:3]]
    assert hits[1]["tenant_id"] == "t1" and hits[0]["span_id"] == docs[0]["span_id"]
    assert [h["call_id"] for h in search.search(call_id=call_id, query="level:WARNING")] == [
        call_id
    ]

    monkeypatch.setenv("PARLEY_OPENSEARCH_URL", opensearch)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["logs", "search", "--call", call_id, "--json"])
        saved = CliRunner().invoke(
            app, ["logs", "search", "--saved", "slow-turns", "--call", call_id]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["message"] for line in result.output.splitlines()] == [
        h["message"] for h in hits
    ]
    assert saved.exit_code == 0 and saved.output.count("\n") == 1 and "turn latency" in saved.output


def test_retention_deletes_only_daily_indices_past_it(opensearch: str) -> None:
    search = LogSearch(opensearch)
    old: dict[str, Any] = {
        "@timestamp": "2020-01-02T03:04:05.000+00:00",
        "level": "INFO",
        "logger": "parley.test",
        "message": "an old line",
        "call_id": f"call_{uuid.uuid4().hex}",
    }
    search.bulk([old], refresh=True)
    assert "parley-logs-2020.01.02" in search.prune(14)
    assert search.search(call_id=old["call_id"]) == []


def test_saved_searches_and_bad_input() -> None:
    assert {"errors", "slow-turns", "llm-failures", "dead-letters"} <= set(saved_searches())
    result = CliRunner().invoke(app, ["logs", "search"])
    assert result.exit_code == 2 and "--call" in result.output
    result = CliRunner().invoke(app, ["logs", "search", "--saved", "nope"])
    assert result.exit_code == 2 and "no saved search" in result.output
    record = logging.LogRecord("x", logging.INFO, "f", 1, "{not json", None, None)
    assert document(record)["message"] == "{not json"


async def test_every_line_logged_inside_a_call_carries_the_call_and_its_trace(
    collected: Collect,
) -> None:
    """The media node's own lines name no call; the call's context (tracing.start_call) does,
    in the task that serves the call and in every task it starts."""
    import asyncio

    from opentelemetry import context as otel_context

    from shared import tracing

    log = logging.getLogger("parley.test.logsearch")
    call_id = f"call_{uuid.uuid4().hex}"
    provider = TracerProvider()
    token = otel_context.attach(otel_context.Context())

    async def in_a_task() -> None:
        log.info("caller said 415 555 0142")

    try:
        original = tracing.tracer
        tracing.tracer = provider.get_tracer("test")  # type: ignore[assignment]
        try:
            span = tracing.start_call(call_id, {}, **{"tenant.id": "t9", "agent.id": "a1"})
        finally:
            tracing.tracer = original
        log.info("call started")
        await asyncio.create_task(in_a_task())
        span.end()
    finally:
        otel_context.detach(token)
    log.info("after the call")

    docs = [json.loads(line) for line in collected.lines]
    trace_id = format(span.get_span_context().trace_id, "032x")
    for doc in docs[:2]:
        assert (doc["call_id"], doc["tenant_id"], doc["agent_id"]) == (call_id, "t9", "a1")
        assert doc["trace_id"] == trace_id and len(doc["span_id"]) == 16
    assert "555 0142" not in docs[1]["message"]
    assert "call_id" not in docs[2] and "trace_id" not in docs[2]


def test_lambda_log_lines_are_the_same_documents_redacted() -> None:
    """Powertools' lines (the Lambdas') carry @timestamp, the call and trace ids, and no PII:
    identifiers are kept whole, caller text and free-form values are masked."""
    import io

    from functions.common.observability import logger

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logger.registered_formatter)
    logging.getLogger(logger.name).addHandler(handler)
    tracer = TracerProvider().get_tracer("test")
    try:
        with tracer.start_as_current_span("POST /twilio/voice") as span:
            logger.warning(
                "call to 415 555 0142 refused", number="+14155550142", call_id="call_0123456789"
            )
    finally:
        logging.getLogger(logger.name).removeHandler(handler)
    line = out.getvalue().strip().splitlines()[-1]
    doc = json.loads(line)
    assert "555" not in line and doc["number"] == "[PHONE]"
    assert doc["call_id"] == "call_0123456789" and doc["level"] == "WARNING"
    assert doc["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert doc["@timestamp"].startswith("20") and "T" in doc["@timestamp"]
    # The fields LogSearch queries and prints, as in the media node's documents.
    assert {"@timestamp", "level", "message", "logger", "call_id"} <= set(doc)


def test_traces_are_a_data_stream_that_retention_rolls_over_and_prunes(opensearch: str) -> None:
    """The collector's span documents land in a data stream (the installed template); the prune
    rolls its write index over once a day old and deletes backing indices past the retention,
    as the ISM policy does on a domain that has the plugin."""
    search = LogSearch(opensearch)
    installed = search.install()
    assert installed[:2] == ["template parley-logs", "template parley-traces"]
    assert not [i for i in installed if i.startswith("policy")]  # the local node has no ISM
    stream = f"ss4o_traces-parley-test{uuid.uuid4().hex[:8]}"
    span = {
        "traceId": uuid.uuid4().hex,
        "spanId": uuid.uuid4().hex[:16],
        "name": "call",
        "startTime": "2026-12-01T10:00:00.123456789Z",
        "endTime": "2026-12-01T10:00:05Z",
    }
    http = search.http
    put = http.post(f"{opensearch}/{stream}/_doc?refresh=true", json=span)
    assert put.status_code == 201, put.text
    first = put.json()["_index"]
    assert first.startswith(f".ds-{stream}-")
    streams = http.get(f"{opensearch}/_data_stream/{stream}").json()["data_streams"]
    assert [s["timestamp_field"]["name"] for s in streams] == ["startTime"]

    assert first not in search.prune(14)  # today: nothing is old enough
    later = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=20)
    assert first in search.prune(14, today=later)
    after = http.get(f"{opensearch}/_data_stream/{stream}").json()["data_streams"][0]
    assert [i["index_name"] for i in after["indices"]] != [first]  # a new write index
    found = http.get(f"{opensearch}/{stream}/_search", params={"q": f"traceId:{span['traceId']}"})
    assert found.json()["hits"]["total"]["value"] == 0
    http.delete(f"{opensearch}/_data_stream/{stream}")


def test_the_retention_policies_fit_what_they_govern() -> None:
    from shared.logsearch import RETENTION_POLICIES, TRACES_TEMPLATE

    patterns = {}
    for policy_id, path in RETENTION_POLICIES.items():
        policy = json.loads(path.read_text())["policy"]
        states = {s["name"] for s in policy["states"]}
        assert policy["default_state"] in states
        for state in policy["states"]:
            assert {t["state_name"] for t in state["transitions"]} <= states, policy_id
        patterns[policy_id] = policy["ism_template"][0]["index_patterns"]
    assert patterns["parley-logs"] == ["parley-logs-*"]
    stream_pattern = json.loads(TRACES_TEMPLATE.read_text())["index_patterns"][0]
    assert patterns["parley-traces"] == [f".ds-{stream_pattern}"]  # the streams' backing indices
