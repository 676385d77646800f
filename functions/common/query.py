"""Query-string strictness: a parameter a route does not declare is a 422, not silently ignored."""

from __future__ import annotations

from fastapi import Request

from functions.common.errors import ApiError, ErrorDetail

_allowed_by_route: dict[int, frozenset[str]] = {}


def _allowed(route: object) -> frozenset[str]:
    key = id(route)
    if key not in _allowed_by_route:
        names: set[str] = set()
        pending = [getattr(route, "dependant", None)]
        while pending:
            dependant = pending.pop()
            if dependant is None:
                continue
            names.update(p.alias for p in dependant.query_params)
            pending.extend(dependant.dependencies)
        _allowed_by_route[key] = frozenset(names)
    return _allowed_by_route[key]


async def reject_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    if route is None:
        return
    unknown = sorted(set(request.query_params.keys()) - _allowed(route))
    if unknown:
        raise ApiError(
            422,
            f"unknown query parameter(s): {', '.join(u[:40] for u in unknown[:5])}",
            details=[
                ErrorDetail(field=f"query.{u[:40]}", message="unknown parameter")
                for u in unknown[:20]
            ],
        )
