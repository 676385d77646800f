"""Builds a function's FastAPI app and its Lambda handler (Mangum inside Powertools)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, FastAPI, Request, Response
from mangum import Mangum

from functions.common.errors import install_error_handlers
from functions.common.input_guard import InputGuard
from functions.common.observability import logger, metrics, tracer

API_TITLE = "Parley API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "Twilio webhooks, the admin API and the analytics API of Parley. Every /v1 route needs "
    "`Authorization: Bearer <api key>` and only ever returns the key's tenant's data. Errors "
    'share one shape: `{"error": {"code", "message", "details", "request_id"}}`.'
)


def create_app(*routers: APIRouter, title: str = API_TITLE, lifespan: Any = None) -> FastAPI:
    app = FastAPI(title=title, version=API_VERSION, description=API_DESCRIPTION, lifespan=lifespan)
    for router in routers:
        app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(InputGuard)

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        elapsed_ms = (time.perf_counter() - started) * 1000
        if "aws.context" in request.scope:
            metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="LatencyMs", unit=MetricUnit.Milliseconds, value=elapsed_ms)
            if response.status_code >= 500:
                metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        logger.info(
            "request",
            method=request.method,
            route=path,
            status=response.status_code,
            ms=round(elapsed_ms, 2),
        )
        return response

    return app


def _strip_stage(event: dict[str, Any]) -> dict[str, Any]:
    """Route on the path without a named stage (/prod/twilio/voice -> /twilio/voice).

    ``rawPath`` keeps the stage: the voice webhook needs it to rebuild the URL Twilio signed.
    """
    context = event.get("requestContext") or {}
    stage = context.get("stage")
    http = context.get("http") or {}
    path = http.get("path")
    if not stage or stage == "$default" or not isinstance(path, str):
        return event
    prefix = f"/{stage}"
    if path == prefix or path.startswith(prefix + "/"):
        http = {**http, "path": path[len(prefix) :] or "/"}
        event = {**event, "requestContext": {**context, "http": http}}
    return event


def _ensure_event_loop() -> None:
    # Mangum runs each invocation on the thread's current loop; make sure one is usable.
    try:
        closed = asyncio.get_event_loop().is_closed()
    except RuntimeError:
        closed = True
    if closed:
        asyncio.set_event_loop(asyncio.new_event_loop())


def lambda_handler(app: FastAPI) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point for ``app`` (API Gateway HTTP API v2 events)."""
    asgi = Mangum(app, lifespan="off")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics(capture_cold_start_metric=True, raise_on_empty_metrics=False)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        _ensure_event_loop()
        response: dict[str, Any] = asgi(_strip_stage(event), context)
        return response

    return handler  # type: ignore[no-any-return]
