"""What an agent says word for word: the texts a media node can synthesize before any call."""

from __future__ import annotations

from shared.agents.models import AgentDefinition
from shared.agents.validation import TEMPLATE_NAME


def voicemail_message(definition: AgentDefinition) -> str | None:
    """What the agent leaves on an answering machine after the beep; None: it hangs up."""
    voicemail = definition.voicemail
    return voicemail.message if voicemail.action == "leave_message" else None


def screening_message(definition: AgentDefinition) -> str | None:
    """What the agent tells a call-screening assistant; None: it hangs up."""
    screening = definition.screening
    if screening.action != "announce":
        return None
    return screening.message or f"This is an automated call from {definition.name}."


def fixed_texts(definition: AgentDefinition) -> list[str]:
    """Every spoken text without a ``{{ }}`` template, greeting first, each once. The
    voicemail message is among them: it starts right after the beep, and a machine records
    for a limited time."""
    texts: list[str | None] = [definition.greeting, definition.escalation.message]
    texts += [voicemail_message(definition), screening_message(definition)]
    texts += [v for v in definition.messages.model_dump().values() if isinstance(v, str)]
    for state in definition.states.values():
        texts += [state.say, state.reprompt, state.answer.prompt if state.answer else None]
        for slot in state.collect or []:
            texts += [slot.prompt, slot.reprompt, slot.confirm_prompt]
    fixed = (t.strip() for t in texts if t and t.strip() and not TEMPLATE_NAME.search(t))
    return list(dict.fromkeys(fixed))
