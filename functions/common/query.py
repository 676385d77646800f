"""Query-string strictness: a parameter a route does not declare is a 422, and a single-value
parameter sent more than once (``limit=1&limit=1000``) is a 400: neither is silently ignored.
A multi-value parameter (a list) takes every value it is sent."""

from __future__ import annotations

from collections import Counter

from fastapi import Request
from fastapi._compat import field_annotation_is_sequence

from functions.common.errors import ApiError, ErrorDetail

# route -> (every query parameter it declares, those that take several values)
_params_by_route: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


def _params(route: object) -> tuple[frozenset[str], frozenset[str]]:
    key = id(route)
    if key not in _params_by_route:
        names: set[str] = set()
        lists: set[str] = set()
        pending = [getattr(route, "dependant", None)]
        while pending:
            dependant = pending.pop()
            if dependant is None:
                continue
            for param in dependant.query_params:
                names.add(param.alias)
                if field_annotation_is_sequence(param.field_info.annotation):
                    lists.add(param.alias)
            pending.extend(dependant.dependencies)
        _params_by_route[key] = (frozenset(names), frozenset(lists))
    return _params_by_route[key]


async def reject_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    if route is None:
        return
    allowed, lists = _params(route)
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise ApiError(
            422,
            f"unknown query parameter(s): {', '.join(u[:40] for u in unknown[:5])}",
            details=[
                ErrorDetail(field=f"query.{u[:40]}", message="unknown parameter")
                for u in unknown[:20]
            ],
        )
    counts = Counter(k for k, _ in request.query_params.multi_items())
    repeated = sorted(k for k, n in counts.items() if n > 1 and k not in lists)
    if repeated:
        raise ApiError(
            400,
            f"query parameter(s) sent more than once: {', '.join(r[:40] for r in repeated[:5])}",
            details=[
                ErrorDetail(field=f"query.{r[:40]}", message="takes one value; send it once")
                for r in repeated[:20]
            ],
        )
