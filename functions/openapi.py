"""The API's OpenAPI document, committed as ``functions/openapi.json`` (a test fails on drift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OPENAPI_FILE = Path(__file__).with_name("openapi.json")


def openapi_document() -> dict[str, Any]:
    from functions.local import create_local_app

    return create_local_app().openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def write(path: Path = OPENAPI_FILE) -> Path:
    path.write_text(render())
    return path
