"""Dispositions and the template summary of a call (no LLM needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from media_nodes.dialogue.protocol import EndReason
from shared.agents.dispositions import (
    ESCALATED,
    FAILED,
    HUNG_UP,
    RESOLVED,
    STANDARD_DISPOSITIONS,
    VOICEMAIL,
)

__all__ = ["STANDARD_DISPOSITIONS", "disposition_for_end", "template_summary"]


def disposition_for_end(reason: EndReason, tentative: str | None) -> str:
    """The disposition of a call that ended without the agent choosing one.

    ``tentative`` is what the last state reached promised (``disposition:`` on a state): a caller
    who hangs up after hearing their order status was still served.
    """
    if reason == "transferred":
        return ESCALATED
    if reason == "error":
        return FAILED
    if reason == "answering_machine":
        return VOICEMAIL
    if tentative:
        return tentative
    if reason == "caller_hung_up":
        return HUNG_UP
    if reason == "agent_ended":
        return RESOLVED
    return FAILED  # shutdown with nothing achieved


def template_summary(
    *,
    agent_name: str,
    disposition: str,
    intents: Sequence[str],
    slots: Mapping[str, Any],
    escalation: str | None,
) -> str:
    """One or two plain sentences, e.g. for a CRM note."""
    asked = ", ".join(dict.fromkeys(i.replace("_", " ") for i in intents)) or "nothing recognised"
    parts = [f"Caller of {agent_name} asked about: {asked}."]
    if slots:
        parts.append(
            "Collected " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in slots.items()) + "."
        )
    if escalation:
        parts.append(f"Escalated ({escalation.replace('_', ' ')}).")
    parts.append(f"Outcome: {disposition.replace('_', ' ')}.")
    return " ".join(parts)
