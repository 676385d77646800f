"""The committed OpenAPI document and sample events are current; the local server (every function
on one port) survives schemathesis fuzzing of every operation with zero server errors."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from functions import openapi, samples
from tests.functions.conftest import Tenant, make_agent, make_tenant

schema = schemathesis.openapi.from_path(str(openapi.OPENAPI_FILE))


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
