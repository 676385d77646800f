"""``{{ name }}`` templates in what the agent says and in tool URLs.

Deliberately tiny: names only (a slot, or ``vars.NAME`` for call variables) and a fixed set of
filters saying how to speak a value (``{{ phone | phone }}``), no expressions, so a tenant's
definition can never run code. Unknown names render as nothing.
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
    formatted: Callable[[str, str], Any] | None = None,
) -> str:
    """Fill ``{{ name }}``; ``escape(name, value)`` may encode values (URL-quote slot values).

    ``{{ name | filter }}`` asks ``formatted(name, filter)`` when given (spoken text); where
    there is none (URLs, bodies) the value is the plain one.
    """

    def substitute(match: re.Match[str]) -> str:
        name, spoken_as = match.group(1), match.group(2)
        if spoken_as and formatted is not None:
            value = formatted(name, spoken_as)
        else:
            value = lookup(name)
        return "" if value is None else escape(name, str(value))

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
