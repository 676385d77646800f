"""Pieces of functions/common that need no server: settings, stage stripping, cursors, errors."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from functions.analytics import cursor
from functions.common.app import _strip_stage, create_app
from functions.common.config import FunctionSettings
from functions.common.errors import ApiError
from functions.samples import http_event
from shared.settings import SettingsError, load_settings


def test_a_bad_public_base_url_names_its_variable(monkeypatch: Any) -> None:
    monkeypatch.setenv("PARLEY_PUBLIC_BASE_URL", "ftp://example.com")
    with pytest.raises(SettingsError, match="PARLEY_PUBLIC_BASE_URL"):
        load_settings(FunctionSettings)
    monkeypatch.setenv("PARLEY_PUBLIC_BASE_URL", "https://api.example.com/prod/")
    assert load_settings(FunctionSettings).public_base_url == "https://api.example.com/prod"


def test_the_stage_is_stripped_for_routing_but_kept_in_raw_path() -> None:
    event = http_event("GET", "/v1/calls", stage="prod")
    routed = _strip_stage(event)
    assert routed["requestContext"]["http"]["path"] == "/v1/calls"
    assert routed["rawPath"] == "/prod/v1/calls"
    assert event["requestContext"]["http"]["path"] == "/prod/v1/calls"  # the input is untouched
    default = http_event("GET", "/prod-report")
    assert _strip_stage(default) is default


def test_cursors_round_trip_and_refuse_tampering() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    token = cursor.encode("-started_at", moment, "call-1")
    assert cursor.decode(token, "-started_at") == (moment, "call-1")
    assert cursor.decode(cursor.encode("duration_ms", 42, "c"), "duration_ms") == (42, "c")
    for bad in ("", "!!!", cursor.encode("duration_ms", True, "c")):  # type: ignore[arg-type]
        with pytest.raises(ApiError) as caught:
            cursor.decode(bad, "duration_ms")
        assert caught.value.status == 422


def test_unexpected_errors_are_a_500_in_the_shared_shape_without_a_trace() -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    client = TestClient(create_app(router), raise_server_exceptions=False)
    reply = client.get("/boom", headers={"x-request-id": "req-1"})
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["code"] == "internal_error" and error["request_id"] == "req-1"
    assert "secret" not in reply.text and "Traceback" not in reply.text
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
