"""An agent compiled for calls: its classifier (examples embedded once), knowledge and clients.

One :class:`AgentRuntime` per agent version is shared by every call of that agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from media_nodes.dialogue.llm import LlmClient
from media_nodes.dialogue.nlu.intents import IntentClassifier
from shared.agents.loader import LoadedAgent
from shared.agents.models import AgentDefinition, HttpAction, IntentRoute
from shared.knowledge.embedder import Embedder
from shared.knowledge.store import KnowledgeBase

GLOBAL_SCOPE = "*"


def intent_label(scope: str, intent: str) -> str:
    return f"{scope}:{intent}"


@dataclass
class AgentRuntime:
    loaded: LoadedAgent
    tenant_id: str
    classifier: IntentClassifier
    threshold: float
    http: httpx.AsyncClient
    knowledge: KnowledgeBase | None = None
    llm: LlmClient | None = None
    slot_types: dict[str, str] = field(default_factory=dict)

    @property
    def definition(self) -> AgentDefinition:
        return self.loaded.definition

    @property
    def agent_id(self) -> str:
        return self.loaded.definition.id

    @property
    def llm_enabled(self) -> bool:
        return self.llm is not None and self.definition.llm.enabled

    def routes(self, state_name: str) -> dict[str, tuple[str, IntentRoute]]:
        """label -> (intent name, route) for what the caller may say in ``state_name``.

        A state's own intent wins over a global one of the same name.
        """
        state = self.definition.states[state_name]
        routes = {
            intent_label(GLOBAL_SCOPE, name): (name, route)
            for name, route in self.definition.global_intents.items()
            if name not in (state.intents or {})
        }
        for name, route in (state.intents or {}).items():
            routes[intent_label(state_name, name)] = (name, route)
        return routes

    def global_routes(self) -> dict[str, tuple[str, IntentRoute]]:
        return {
            intent_label(GLOBAL_SCOPE, name): (name, route)
            for name, route in self.definition.global_intents.items()
        }


def build_classifier(definition: AgentDefinition, embedder: Embedder) -> IntentClassifier:
    examples: dict[str, list[str]] = {}
    for name, route in definition.global_intents.items():
        examples[intent_label(GLOBAL_SCOPE, name)] = list(route.examples)
    for state_name, state in definition.states.items():
        for name, route in (state.intents or {}).items():
            examples[intent_label(state_name, name)] = list(route.examples)
    classifier = IntentClassifier(embedder, examples)
    # The label sets calls rank with the contrastive model: each state's, as routes() builds them.
    for state_name, state in definition.states.items():
        own = state.intents or {}
        labels = [intent_label(GLOBAL_SCOPE, n) for n in definition.global_intents if n not in own]
        classifier.prepare([*labels, *(intent_label(state_name, n) for n in own)])
    return classifier


def slot_types(definition: AgentDefinition) -> dict[str, str]:
    types: dict[str, str] = {}
    for state in definition.states.values():
        for slot in state.collect or []:
            types[slot.name] = slot.type
        if isinstance(state.action, HttpAction):
            for name in state.action.result:
                types.setdefault(name, "tool")
    return types
