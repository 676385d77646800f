"""Writes the JSON Schemas of the event contracts (``parley events schemas``)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.events.models import Event

SCHEMA_FILE = "event.schema.json"


def event_schemas() -> dict[str, dict[str, object]]:
    """File name -> JSON Schema, for the envelope (with every payload in ``$defs``)."""
    schema = Event.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://parley.dev/schemas/event.schema.json"
    return {SCHEMA_FILE: schema}


def render(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in event_schemas().items():
        path = folder / name
        path.write_text(render(schema))
        written.append(path)
    return written
