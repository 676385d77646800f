"""Builds a function's FastAPI app and its Lambda handler (Mangum inside Powertools)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from mangum import Mangum
from starlette.routing import Route

from functions.common.errors import install_error_handlers
from functions.common.input_guard import InputGuard
from functions.common.observability import ROUTE_DIMENSION, logger, metrics, tracer
from functions.common.operations import operations
from shared import tracing
from shared.settings import SettingsError, get_settings

WEBHOOK_FLUSH_BUDGET_MS = 1000
API_TITLE = "Parley API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "Twilio webhooks, the admin API and the analytics API of Parley. Every /v1 route needs "
    "`Authorization: Bearer <api key>` and only ever returns the key's tenant's data. Errors "
    'share one shape: `{"error": {"code", "message", "details", "request_id"}}`.'
)


Docs = Literal["none", "own", "merged"]


def create_app(
    *routers: APIRouter, title: str = API_TITLE, lifespan: Any = None, docs: Docs = "none"
) -> FastAPI:
    """One function's app. ``docs``: "own" serves this app's OpenAPI document at /openapi.json
    and /docs (the local server, which holds every route); "merged" serves the committed document
    of every function's routes (``functions/openapi.json``); "none" serves neither. Behind API
    Gateway exactly one function serves "merged", so /docs shows the whole API."""
    own = docs == "own"
    app = FastAPI(
        title=title,
        version=API_VERSION,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json" if own else None,
        docs_url="/docs" if own else None,
        redoc_url=None,
    )
    for router in routers:
        app.include_router(router)
    if docs == "merged":
        _serve_merged_docs(app)
    install_error_handlers(app)
    app.add_middleware(InputGuard)

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        try:
            exporting = tracing.configure(get_settings(), "parley-functions")
        except SettingsError:  # the route's runtime answers bad settings with a clear error
            exporting = False
        # The request's span is current while the route runs: the voice webhook hands its
        # context to the media node in the stream's parameters.
        with tracing.tracer.start_as_current_span(
            f"{request.method} {request.url.path}", kind=tracing.SpanKind.SERVER
        ) as span:
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            span.update_name(f"{request.method} {path}")
            span.set_attribute("http.response.status_code", response.status_code)
        if exporting:  # a Lambda is frozen after it answers: send the spans first
            # ...but never keep Twilio waiting on an unreachable collector: what is not sent
            # within the budget goes on after the next thaw.
            await asyncio.to_thread(tracing.flush, WEBHOOK_FLUSH_BUDGET_MS)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if "aws.context" in request.scope:
            # One request per invocation: the route is a dimension of everything this
            # invocation emits (the Twilio webhooks' latency and errors, per route).
            metrics.add_dimension(name=ROUTE_DIMENSION, value=path)
            metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="LatencyMs", unit=MetricUnit.Milliseconds, value=elapsed_ms)
            if response.status_code >= 500:
                metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
            elif response.status_code >= 400:  # a bad signature (403) or form (422) from Twilio
                metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
        logger.info(
            "request",
            method=request.method,
            route=path,
            status=response.status_code,
            ms=round(elapsed_ms, 2),
        )
        return response

    return app


def _serve_merged_docs(app: FastAPI) -> None:
    from functions.openapi import OPENAPI_FILE

    document = json.loads(OPENAPI_FILE.read_text())

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def swagger_ui(request: Request) -> HTMLResponse:
        # Relative, so it works under a named API Gateway stage too.
        return get_swagger_ui_html(openapi_url="openapi.json", title=document["info"]["title"])

    app.add_route("/openapi.json", openapi_json, include_in_schema=False)
    app.add_route("/docs", swagger_ui, include_in_schema=False)


def route_keys(app: FastAPI) -> set[str]:
    """The API Gateway HTTP API route keys (``METHOD /path``) that ``app`` answers: its
    OpenAPI operations, and the docs routes, which are plain routes of the app itself."""
    keys = {f"{method} {path}" for path, methods in operations(app).items() for method in methods}
    for route in app.routes:
        if type(route) is Route and route.methods:
            # Starlette answers HEAD for every GET route itself; API Gateway needs no route.
            keys |= {f"{method} {route.path}" for method in route.methods - {"HEAD"}}
    return keys


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
