"""``{{ name }}`` templates in what the agent says and in tool URLs.

Deliberately tiny: names only (a slot, or ``vars.NAME`` for call variables), no expressions, so a
tenant's definition can never run code. Unknown names render as nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from shared.agents.validation import TEMPLATE_NAME


def render(
    template: str,
    lookup: Callable[[str], Any],
    *,
    escape: Callable[[str, str], str] = lambda _name, value: value,
) -> str:
    """Fill ``{{ name }}``; ``escape(name, value)`` may encode values (URL-quote slot values)."""

    def substitute(match: re.Match[str]) -> str:
        value = lookup(match.group(1))
        return "" if value is None else escape(match.group(1), str(value))

    return TEMPLATE_NAME.sub(substitute, template)


def render_json(value: Any, lookup: Callable[[str], Any]) -> Any:
    """Render every string inside a JSON-like value; a string that is one name keeps its type."""
    if isinstance(value, str):
        whole = TEMPLATE_NAME.fullmatch(value.strip())
        if whole:
            return lookup(whole.group(1))
        return render(value, lookup)
    if isinstance(value, dict):
        return {key: render_json(item, lookup) for key, item in value.items()}
    if isinstance(value, list):
        return [render_json(item, lookup) for item in value]
    return value
