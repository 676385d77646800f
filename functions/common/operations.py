"""What an app answers, read from its OpenAPI document: every API route is there (FastAPI
resolves included routers), so the API Gateway route table and the ``Allow`` header of a 405
both come from this one place."""

from __future__ import annotations

from fastapi import FastAPI


def operations(app: FastAPI) -> dict[str, list[str]]:
    """Path (``/v1/calls/{call_id}``) -> the methods its operations take, upper case, sorted."""
    return {
        path: sorted(method.upper() for method in methods)
        for path, methods in app.openapi().get("paths", {}).items()
    }
