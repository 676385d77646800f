"""Refuses, before any route runs, input that no route can store or parse safely.

PostgreSQL text cannot hold a NUL character, UTF-8 cannot hold a lone surrogate, and Python's
JSON decoder recurses once per nesting level. Checking every route's parameters and bodies
separately would leave gaps, so this one ASGI middleware looks at each request's path, query
string, headers and body and answers with the shared error shape:

- 400 ``bad_request``: a NUL byte or lone surrogate anywhere, or JSON nested deeper than
  :data:`MAX_JSON_DEPTH`;
- 413 ``too_large``: a body over :data:`MAX_BODY_BYTES`.

Bodies that are not JSON or form data, or that do not parse, pass through untouched: the route's
own validation answers those (422 for malformed JSON).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.common.errors import error_response

# The largest body a route takes: an agent definition (2 MB of YAML, or its JSON escaping) or a
# 1,000,000-character knowledge document, JSON-escaped.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_JSON_DEPTH = 64


class InputRefused(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise InputRefused(400, f"{where} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputRefused(400, f"{where} contains a lone surrogate (not valid Unicode)") from None


def _check_json(document: Any) -> None:
    """Every key and string of a parsed JSON document, and its depth, without recursion."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value, "a JSON string")
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InputRefused(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, "a JSON key")
                    pending.append((item, depth + 1))
            else:
                pending.extend((item, depth + 1) for item in value)


def _check_url(scope: Scope) -> None:
    path = scope.get("path", "")
    raw_path = scope.get("raw_path") or b""
    if "\x00" in path or b"%00" in raw_path:
        raise InputRefused(400, "the path contains a NUL character")
    _check_text(path, "the path")
    query = scope.get("query_string") or b""
    if b"\x00" in query or b"%00" in query:
        raise InputRefused(400, "the query string contains a NUL character")
    for name, value in scope.get("headers") or []:
        if b"\x00" in name or b"\x00" in value:
            raise InputRefused(400, "a header contains a NUL character")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value)
    return None


def _content_type(scope: Scope) -> str:
    value = _header(scope, b"content-type") or b""
    return value.decode("latin-1").split(";")[0].strip().lower()


def _check_body(body: bytes, content_type: str) -> None:
    if not body:
        return
    if content_type == "application/x-www-form-urlencoded":
        if b"\x00" in body or b"%00" in body:
            raise InputRefused(400, "the form body contains a NUL character")
        return
    if content_type and "json" not in content_type:
        return  # not a body a route parses as JSON: its own validation refuses it
    try:
        document = json.loads(body)
    except RecursionError:
        raise InputRefused(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        return  # malformed: the route answers 422 naming the position
    _check_json(document)


def _declared_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class InputGuard:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _check_url(scope)
            declared = _declared_length(scope)
            if declared is not None and declared > MAX_BODY_BYTES:
                raise InputRefused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
            body = await _read_body(receive)
            _check_body(body, _content_type(scope))
        except InputRefused as refused:
            response = error_response(Request(scope), refused.status, refused.message)
            await response(scope, receive, send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InputRefused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
