"""Agent definitions: pydantic models, YAML/JSON loading with located errors, storage, schema."""

from shared.agents.dispositions import STANDARD_DISPOSITIONS
from shared.agents.loader import (
    AgentDefinitionError,
    KnowledgeText,
    LoadedAgent,
    find_agent,
    inline_knowledge,
    load_agent_file,
    load_agent_text,
    parse_agent,
)
from shared.agents.models import AgentDefinition, IntentRoute, Slot, State

__all__ = [
    "STANDARD_DISPOSITIONS",
    "AgentDefinition",
    "AgentDefinitionError",
    "IntentRoute",
    "KnowledgeText",
    "LoadedAgent",
    "Slot",
    "State",
    "find_agent",
    "inline_knowledge",
    "load_agent_file",
    "load_agent_text",
    "parse_agent",
]
