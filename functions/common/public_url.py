"""The URL as the caller saw it, rebuilt behind API Gateway or a TLS-terminating proxy.

Twilio signs the exact URL it requested: scheme, host, the API Gateway stage path and the query.
Inside Lambda the app sees neither the stage (we strip it to route) nor the scheme, so both are
rebuilt from the original event (``rawPath``) and ``X-Forwarded-Proto``, which API Gateway itself
writes. ``PARLEY_PUBLIC_BASE_URL`` overrides the guess when a custom domain maps the API under
another path.

Anyone can send ``X-Forwarded-Host`` and ``X-Forwarded-Proto``: they are believed only when the
request comes from an address in ``PARLEY_TRUSTED_PROXIES`` (none by default). Otherwise the host
is the ``Host`` header and the scheme the connection's (or, in Lambda, API Gateway's).
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from fastapi import Request

from functions.common.runtime import runtime


def _first(value: str) -> str:
    return value.split(",")[0].strip()


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(entry, strict=False) for entry in entries)


def from_trusted_proxy(request: Request) -> bool:
    """Whether the peer that sent this request is one of the configured proxies."""
    networks = _networks(tuple(runtime().settings.trusted_proxies))
    if not networks or request.client is None:
        return False
    try:
        peer = ip_address(request.client.host)
    except ValueError:
        return False
    return any(peer in network for network in networks)


def _scheme_host(request: Request) -> str:
    headers = request.headers
    scheme = request.url.scheme
    host = headers.get("host") or request.url.netloc
    trusted = from_trusted_proxy(request)
    if trusted or isinstance(request.scope.get("aws.event"), dict):
        scheme = _first(headers.get("x-forwarded-proto", "")) or scheme
    if trusted:
        host = _first(headers.get("x-forwarded-host", "")) or host
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
