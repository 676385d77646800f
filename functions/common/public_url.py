"""The URL as the caller saw it, rebuilt behind API Gateway or a TLS-terminating proxy.

Twilio signs the exact URL it requested: scheme, host, the API Gateway stage path and the query.
Inside Lambda the app sees neither the stage (we strip it to route) nor the scheme, so both are
rebuilt from the original event (``rawPath``) and ``X-Forwarded-Proto``. ``PARLEY_PUBLIC_BASE_URL``
overrides the guess when a custom domain maps the API under another path.
"""

from __future__ import annotations

from fastapi import Request

from functions.common.runtime import runtime


def _first(value: str) -> str:
    return value.split(",")[0].strip()


def _scheme_host(request: Request) -> str:
    headers = request.headers
    scheme = _first(headers.get("x-forwarded-proto", "")) or request.url.scheme
    host = _first(headers.get("x-forwarded-host", "")) or headers.get("host") or request.url.netloc
    return f"{scheme}://{host}"


def _raw_path_and_query(request: Request) -> tuple[str, str]:
    event = request.scope.get("aws.event")
    if isinstance(event, dict) and isinstance(event.get("rawPath"), str):
        return event["rawPath"], str(event.get("rawQueryString") or "")
    return request.scope.get("root_path", "") + request.url.path, request.url.query


def public_base_url(request: Request) -> str:
    """scheme://host[/stage] of this API, for URLs we hand to Twilio."""
    configured = runtime().settings.public_base_url
    if configured:
        return configured
    raw_path, _ = _raw_path_and_query(request)
    routed = request.url.path
    prefix = raw_path[: -len(routed)] if routed and raw_path.endswith(routed) else ""
    return _scheme_host(request) + prefix.rstrip("/")


def public_request_url(request: Request) -> str:
    """The full URL of this request as the client requested it (for signature checks)."""
    raw_path, query = _raw_path_and_query(request)
    configured = runtime().settings.public_base_url
    if configured:
        url = configured + request.url.path
    else:
        url = _scheme_host(request) + raw_path
    return f"{url}?{query}" if query else url
