"""The committed OpenAPI document and sample events are current; the local server (every function
on one port) survives schemathesis fuzzing of every operation with zero server errors.

Besides what schemathesis generates from the document, every generated request may be made
hostile: a NUL character in one of its strings, dates at the ends of the
calendar, or a JSON body nested hundreds of levels deep."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from functions import openapi, samples
from tests.functions.conftest import Tenant, make_agent, make_tenant

schema = schemathesis.openapi.from_path(str(openapi.OPENAPI_FILE))

EXTREME_DAYS = ["0001-01-01", "0001-01-15", "1969-12-31", "1970-01-01", "9999-12-31"]
EXTREME_TIMES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "1970-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999Z",
]
schemathesis.openapi.format(
    "date", st.one_of(st.sampled_from(EXTREME_DAYS), st.dates().map(date.isoformat))
)
schemathesis.openapi.format(
    "date-time", st.one_of(st.sampled_from(EXTREME_TIMES), st.datetimes().map(str))
)


def _strings(value: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where the strings of a JSON value are (paths of keys and indexes)."""
    if isinstance(value, str):
        return [where]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _strings(v, (*where, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _strings(v, (*where, i))]
    return []


def _replace(value: Any, where: tuple[Any, ...], new: str) -> Any:
    if not where:
        return new
    head, rest = where[0], where[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


@st.composite
def _hostile(draw: st.DrawFn, case: Any) -> Any:
    """``case`` with one hostile change (a NUL in one of its strings, or its JSON body nested
    deeply), or as it was. (Lone surrogates cannot pass through schemathesis' own checks:
    tests/functions/test_hostile_input.py sends them.)"""
    kind = draw(st.sampled_from(["as generated", "nul", "nesting"]))
    json_body = case.media_type == "application/json" and isinstance(case.body, dict | list)
    if kind == "nesting" and json_body:
        body = case.body
        for _ in range(draw(st.integers(min_value=65, max_value=800))):
            body = [body]
        case.body = body
        return case
    if kind == "nul":
        places = [("path_parameters", (k,)) for k in case.path_parameters or {}]
        places += [("query", (k,)) for k in case.query or {}]
        if case.body is not None and (json_body or isinstance(case.body, dict)):
            places += [("body", p) for p in _strings(case.body) if p]
        if not places:
            return case
        part, where = draw(st.sampled_from(places))
        container = getattr(case, part)
        old = str(_get(container, where))
        at = draw(st.integers(min_value=0, max_value=len(old)))
        setattr(case, part, _replace(container, where, old[:at] + "\x00" + old[at:]))
    return case


def _get(value: Any, where: tuple[Any, ...]) -> Any:
    for part in where:
        value = value[part]
    return value


@schema.hook
def before_generate_case(context: Any, strategy: Any) -> Any:
    return strategy.flatmap(_hostile)


def test_the_committed_openapi_document_matches_the_code() -> None:
    assert openapi.OPENAPI_FILE.read_text() == openapi.render(), (
        "functions/openapi.json is stale: run `parley api openapi`"
    )


def test_every_route_has_a_current_sample_event() -> None:
    built = samples.build_samples()
    for name, event in built.items():
        path = samples.SAMPLES_DIR / name
        assert path.exists() and path.read_text() == samples.render(event), (
            f"{path} is stale: run `parley api samples`"
        )
    routes = {(m.upper(), p) for p, ops in openapi.openapi_document()["paths"].items() for m in ops}
    sampled = {(method, route) for _, method, route, *_ in samples.ROUTES}
    assert routes == sampled


@pytest.fixture
def fuzz_key(sql: psycopg.Connection[Any]) -> Tenant:
    tenant = make_tenant(sql, ["admin", "platform"])
    make_agent(sql, tenant.tenant_id)
    return tenant


def test_the_local_server_serves_docs_and_every_function(live_api: str, fuzz_key: Tenant) -> None:
    assert httpx.get(f"{live_api}/docs").status_code == 200
    assert httpx.get(f"{live_api}/openapi.json").json()["paths"].keys() == (
        openapi.openapi_document()["paths"].keys()
    )
    auth = {"Authorization": fuzz_key.auth}
    assert httpx.get(f"{live_api}/v1/agents", headers=auth).json()[0]["agent_id"] == "acme-shop"
    assert httpx.get(f"{live_api}/v1/calls", headers=auth).json() == {
        "items": [],
        "next_cursor": None,
    }
    assert httpx.post(f"{live_api}/twilio/status", data={"CallSid": "x"}).status_code == 403


@schema.parametrize()
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzing_finds_no_server_errors(case: Any, live_api: str, fuzz_key: Tenant) -> None:
    response = case.call(base_url=live_api, headers={"Authorization": fuzz_key.auth}, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


def test_the_document_says_what_the_server_answers() -> None:
    document = openapi.openapi_document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "400" in responses, (method, path)  # the input guard's answer
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert set(response["content"]) == {"application/json"}, (method, path)
    for webhook in ("/twilio/voice", "/twilio/status"):
        assert {"403", "413", "415", "422"} <= set(document["paths"][webhook]["post"]["responses"])
    voice_ok = document["paths"]["/twilio/voice"]["post"]["responses"]["200"]
    assert set(voice_ok["content"]) == {"application/xml"}
