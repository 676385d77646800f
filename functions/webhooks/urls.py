"""Which receiver URLs a subscription may name.

Production: public https only. The worker POSTs from inside the deployment, so a URL naming a
loopback, private, link-local or otherwise non-public address (or ``localhost``) would let a
tenant probe the internal network; such literals are refused. Development and test
(``PARLEY_ENV``) accept http and local addresses, so a receiver on the same machine works for
demos and tests."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048


def problem(url: str, *, production: bool) -> str | None:
    """Why ``url`` cannot be a receiver, or None if it can."""
    if len(url) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http(s):// URL"
    if parts.username or parts.password:
        return "must not carry credentials (the signature authenticates Parley)"
    if parts.fragment:
        return "must not have a #fragment"
    if not production:
        return None
    if parts.scheme != "https":
        return "must be https:// in production (http is accepted in development and test)"
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return "must name a public host in production"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return "must name a public address in production"
    return None
