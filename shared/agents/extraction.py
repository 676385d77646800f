"""The JSON Schema an agent declares for post-call extraction: checked when the agent is loaded,
and what an extraction result is held to.

jsonschema-rs does the checking (draft 2020-12, the meta-schema included), so a schema Parley
accepts is one any JSON Schema tool reads the same way. Remote references are refused: a
schema that fetched URLs would make the job workers call out wherever an agent author pointed.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs

MAX_SCHEMA_BYTES = 20_000
MAX_ERRORS = 10


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` cannot be an extraction schema, or None when it can."""
    text = json.dumps(schema)
    if len(text) > MAX_SCHEMA_BYTES:
        return f"at most {MAX_SCHEMA_BYTES} bytes of JSON"
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        return "must be of type object, with 'properties' (the fields to extract)"
    if not schema["properties"]:
        return "'properties' must name at least one field"
    if '"$ref": "http' in text or '"$ref": "//' in text:
        return "remote $ref is not allowed (define the parts in $defs)"
    try:
        jsonschema_rs.meta.validate(schema)
        jsonschema_rs.validator_for(schema)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        return f"not a valid JSON Schema: {_first_line(exc)}"
    return None


def extraction_errors(schema: dict[str, Any], value: Any) -> list[str]:
    """Where ``value`` breaks ``schema`` (empty: it matches), each as 'path: message'."""
    validator = jsonschema_rs.validator_for(schema)
    errors = []
    for error in validator.iter_errors(value):
        where = "/".join(str(p) for p in error.instance_path) or "(root)"
        errors.append(f"{where}: {_first_line(error)}"[:300])
        if len(errors) >= MAX_ERRORS:
            break
    return errors


def _first_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return str(message).strip().splitlines()[0] if str(message).strip() else type(exc).__name__
