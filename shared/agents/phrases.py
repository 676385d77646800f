"""What an agent says word for word: the texts a media node can synthesize before any call."""

from __future__ import annotations

from shared.agents.models import AgentDefinition
from shared.agents.validation import TEMPLATE_NAME


def fixed_texts(definition: AgentDefinition) -> list[str]:
    """Every spoken text without a ``{{ }}`` template, greeting first, each once."""
    texts: list[str | None] = [definition.greeting, definition.escalation.message]
    texts += [v for v in definition.messages.model_dump().values() if isinstance(v, str)]
    for state in definition.states.values():
        texts += [state.say, state.reprompt, state.answer.prompt if state.answer else None]
        for slot in state.collect or []:
            texts += [slot.prompt, slot.reprompt, slot.confirm_prompt]
    fixed = (t.strip() for t in texts if t and t.strip() and not TEMPLATE_NAME.search(t))
    return list(dict.fromkeys(fixed))
