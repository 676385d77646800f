"""HTTP tool calls: an agent's ``http`` action, with a timeout and result mapping into slots."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from media_nodes.dialogue.templates import render, render_json
from shared import tracing
from shared.agents.models import HttpAction

MAX_RESPONSE_BYTES = 1_000_000


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    values: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    error: str = ""
    elapsed_ms: float = 0.0


def lookup_path(data: Any, path: str) -> Any:
    """``items.0.name`` in parsed JSON; raises KeyError when a step is missing."""
    current = data
    for step in path.split("."):
        if isinstance(current, dict) and step in current:
            current = current[step]
        elif (
            isinstance(current, list)
            and step.lstrip("-").isdigit()
            and -len(current) <= int(step) < len(current)
        ):
            current = current[int(step)]
        else:
            raise KeyError(path)
    return current


def _quote_caller_values(name: str, value: str) -> str:
    """Slot values come from the caller: quote them so they stay one path segment or query value.

    Variables (``vars.x``) are the deployment's own configuration, such as the API's base URL.
    """
    return value if name.startswith("vars.") else quote(value, safe="")


async def call_http(
    action: HttpAction, lookup: Callable[[str], Any], client: httpx.AsyncClient
) -> ToolResult:
    """Run the action; never raises: failures come back as ``ToolResult(ok=False, error=...)``."""
    started = time.perf_counter()

    def done(**kwargs: Any) -> ToolResult:
        return ToolResult(elapsed_ms=(time.perf_counter() - started) * 1000, **kwargs)

    try:
        url = render(action.url, lookup, escape=_quote_caller_values)
        headers = {k: render(v, lookup) for k, v in action.headers.items()}
        body = render_json(action.body, lookup) if action.body is not None else None
        with tracing.tracer.start_as_current_span(
            "http action",
            kind=tracing.SpanKind.CLIENT,
            attributes={"http.request.method": action.method, "url.full": url.split("?")[0]},
        ) as span:
            response = await client.request(
                action.method, url, headers=headers, json=body, timeout=action.timeout_s
            )
            span.set_attribute("http.response.status_code", response.status_code)
    except httpx.TimeoutException:
        return done(ok=False, error=f"timed out after {action.timeout_s:g}s")
    except (httpx.HTTPError, ValueError) as exc:
        return done(ok=False, error=f"{type(exc).__name__}: {exc}")
    if response.status_code >= 400:
        return done(ok=False, status=response.status_code, error=f"HTTP {response.status_code}")
    if not action.result:
        return done(ok=True, status=response.status_code)
    if len(response.content) > MAX_RESPONSE_BYTES:
        return done(ok=False, status=response.status_code, error="response too large")
    try:
        data = response.json()
    except ValueError:
        return done(ok=False, status=response.status_code, error="response is not JSON")
    values: dict[str, Any] = {}
    for slot, path in action.result.items():
        try:
            values[slot] = lookup_path(data, path)
        except KeyError:
            return done(ok=False, status=response.status_code, error=f"response has no '{path}'")
    return done(ok=True, status=response.status_code, values=values)
