"""Content negotiation: the representation an ``Accept`` header prefers among those a route
serves, or 406 when it accepts none of them (RFC 9110 §12.5.1: q-values, ``type/*`` and
``*/*``; the most specific range that matches an offer sets its q; ties go to the route's
order)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request

from functions.common.errors import ApiError

MAX_RANGES = 32


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    out = []
    for part in accept.split(",")[:MAX_RANGES]:
        fields = [f.strip() for f in part.split(";")]
        kind, _, sub = fields[0].lower().partition("/")
        if not kind or not sub:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        out.append((kind, sub, q))
    return out


def _quality(offer: str, ranges: list[tuple[str, str, float]]) -> float:
    kind, _, sub = offer.partition("/")
    best: tuple[int, float] | None = None
    for r_kind, r_sub, q in ranges:
        if (r_kind, r_sub) == (kind, sub):
            specificity = 2
        elif r_kind == kind and r_sub == "*":
            specificity = 1
        elif (r_kind, r_sub) == ("*", "*"):
            specificity = 0
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, q)
    return best[1] if best is not None else 0.0


def choose(accept: str | None, offers: Sequence[str]) -> str:
    """The offer ``accept`` prefers; the first offer when the header is absent or empty."""
    if not accept or not accept.strip():
        return offers[0]
    ranges = _ranges(accept)
    scored = [(_quality(offer, ranges), -i, offer) for i, offer in enumerate(offers)]
    q, _, offer = max(scored)
    if q <= 0:
        raise ApiError(
            406,
            f"this route serves {', '.join(offers)}; the Accept header allows none of them",
        )
    return offer


async def serves_json(request: Request) -> None:
    """A dependency for routes that answer JSON only: 406 when Accept refuses JSON."""
    choose(request.headers.get("accept"), ("application/json",))
