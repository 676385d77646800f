"""One JSON error shape for every function: ``{"error": {"code", "message", "details"}}``.

Validation errors become 422 with each problem located; anything unexpected becomes a 500 with
the request id and no stack trace (the trace goes to the log).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.common.operations import operations
from shared.db import DatabaseUnavailable

log = logging.getLogger("parley.functions")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    field: str = Field("", description="Where the problem is: query.limit, body.definition, ...")
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. not_found.")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """Raise from a route to answer with the shared error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.details = details or []
        self.headers = headers


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, f"{field}: {message}", details=[ErrorDetail(field=field, message=message)])


def _request_id(request: Request) -> str | None:
    context = request.scope.get("aws.context")
    if context is not None:
        return getattr(context, "aws_request_id", None)
    return request.headers.get("x-request-id")


def error_response(
    request: Request,
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorBody(
            code=code or _CODES.get(status, "error"),
            message=message,
            details=details or [],
            request_id=_request_id(request),
        )
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _allowed_methods(request: Request, fallback: str) -> str:
    """Every method some operation takes on this path (Starlette names only the first route's);
    ``fallback`` for paths outside the OpenAPI document (/docs)."""
    app = request.app
    table: list[tuple[re.Pattern[str], str]] | None = getattr(app.state, "methods_by_path", None)
    if table is None:
        table = [
            (
                re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"),
                ", ".join(methods),
            )
            for path, methods in operations(app).items()
        ]
        app.state.methods_by_path = table
    for pattern, methods in table:
        if pattern.match(request.url.path):
            return methods
    return fallback


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            request,
            exc.status,
            exc.message,
            code=exc.code,
            details=exc.details,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            ErrorDetail(field=_location(tuple(e.get("loc", ()))), message=str(e.get("msg", "")))
            for e in exc.errors()
        ]
        summary = "; ".join(f"{d.field}: {d.message}" for d in details[:5])
        return error_response(request, 422, f"invalid request: {summary}", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            allowed = _allowed_methods(request, (headers or {}).get("Allow", ""))
            headers = {**(headers or {}), "Allow": allowed}
        return error_response(request, exc.status_code, message, headers=headers)

    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return error_response(request, 503, "the database is unavailable; try again shortly")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal error; the request id is in the logs")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": code.replace("_", " ")}
    for status, code in _CODES.items()
    if status in (400, 401, 403, 404, 409, 413, 422)
}
"""The errors any /v1 route can answer (400 and 413 come from the input guard)."""
