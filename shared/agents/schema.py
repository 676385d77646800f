"""JSON Schema of agent definitions (``events/schemas/agent.schema.json``), for editors and CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

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


REFERENCE_START = "<!-- agent-fields:start (parley agent schema --docs docs/dialogue.md) -->"
REFERENCE_END = "<!-- agent-fields:end -->"


def _models() -> list[tuple[str, type[BaseModel]]]:
    from shared.agents import models

    return [
        ("Agent (top level)", models.AgentDefinition),
        ("`states.NAME`", models.State),
        ("`collect[]` slot", models.Slot),
        ("`intents.NAME` / `global_intents.NAME`", models.IntentRoute),
        ("`answer`", models.Answer),
        ("`branches[]`", models.Branch),
        ("`action` (type: http)", models.HttpAction),
        ("`action` (type: transfer)", models.TransferAction),
        ("`action` (type: end)", models.EndAction),
        ("`escalation`", models.Escalation),
        ("`knowledge`", models.Knowledge),
        ("`knowledge.documents[]`", models.KnowledgeDocument),
        ("`llm`", models.LlmOptions),
        ("`messages`", models.Messages),
        ("`analysis`", models.Analysis),
    ]


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return "—"
    value = field.default
    if value is None:
        return "—"
    shown = json.dumps(value) if not isinstance(value, str) or not value else value
    shown = shown.replace("|", "\\|").replace("{{", "{ {").replace("}}", "} }")
    return f"`{shown}`" if len(shown) <= 40 else f"`{shown[:37]}...`"


def field_reference() -> str:
    """Every field of an agent definition as Markdown tables (from the models' descriptions)."""
    parts = [REFERENCE_START, ""]
    for title, model in _models():
        parts += [f"**{title}**", "", "| field | default | meaning |", "| --- | --- | --- |"]
        for name, field in model.model_fields.items():
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            parts.append(f"| `{name}` | {_default(field)} | {description} |")
        parts.append("")
    parts.append(REFERENCE_END)
    return "\n".join(parts)


def update_field_reference(doc: Path) -> Path:
    """Replace the field reference block in ``doc`` (it must hold the start and end markers)."""
    text = doc.read_text(encoding="utf-8")
    start, end = text.index(REFERENCE_START), text.index(REFERENCE_END) + len(REFERENCE_END)
    doc.write_text(text[:start] + field_reference() + text[end:], encoding="utf-8")
    return doc
