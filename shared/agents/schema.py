"""JSON Schema of agent definitions (``events/schemas/agent.schema.json``), for editors and CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.agents.models import AgentDefinition

SCHEMA_FILE = "agent.schema.json"


def agent_schema() -> dict[str, Any]:
    schema = AgentDefinition.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://parley.dev/schemas/agent.schema.json"
    return schema


def render_agent_schema() -> str:
    return json.dumps(agent_schema(), indent=2, sort_keys=True) + "\n"


def write_agent_schema(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SCHEMA_FILE
    path.write_text(render_agent_schema())
    return path
