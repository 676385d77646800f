"""The bounds of what an API client attaches to a call: metadata (its own keys, shown with the
call and filterable) and variables (passed to the agent, like a campaign contact's)."""

from __future__ import annotations

import re

METADATA_KEY = r"^[A-Za-z0-9_.-]{1,40}$"
MAX_METADATA_KEYS = 50
MAX_METADATA_VALUE = 500
VARIABLE = r"^[a-z][a-z0-9_]{0,63}$"
MAX_VARIABLES = 50
MAX_VARIABLE_VALUE = 500


def check_metadata(value: dict[str, str]) -> dict[str, str]:
    """Raises ValueError naming the first rule ``value`` breaks (pydantic answers it as a 422)."""
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} keys ({len(value)} given)")
    for key, item in value.items():
        if not re.match(METADATA_KEY, key):
            raise ValueError(f"key '{key[:60]}' does not match {METADATA_KEY}")
        if len(item) > MAX_METADATA_VALUE:
            raise ValueError(f"the value of '{key}' is longer than {MAX_METADATA_VALUE} characters")
    return value


def check_variables(
    value: dict[str, str], reserved: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Raises ValueError naming the first rule ``value`` breaks; ``reserved`` names belong to
    the call itself (the parameters that identify it to the media node)."""
    if len(value) > MAX_VARIABLES:
        raise ValueError(f"at most {MAX_VARIABLES} variables ({len(value)} given)")
    for name, item in value.items():
        if not re.match(VARIABLE, name):
            raise ValueError(f"variable '{name[:60]}' is not lower_snake_case ({VARIABLE})")
        if name in reserved:
            raise ValueError(f"'{name}' is reserved: {', '.join(sorted(reserved))}")
        if len(item) > MAX_VARIABLE_VALUE:
            raise ValueError(f"'{name}' is longer than {MAX_VARIABLE_VALUE} characters")
    return value
