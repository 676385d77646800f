"""The Markdown table of every setting (name, default, meaning) in the README.

Run: .venv/bin/python scripts/settings_table.py [--write README.md]
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr

from functions.common.config import FunctionSettings
from shared.settings import ENV_PREFIX


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        return "(dev value)" if value.get_secret_value() else "(empty)"
    if value in ("", None):
        return "(empty)"
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    # FunctionSettings = the shared settings plus the few only the HTTP API reads.
    for name, field in FunctionSettings.model_fields.items():
        rows.append(
            f"| `{ENV_PREFIX}{name.upper()}` | {_default(field.default)} | {field.description} |"
        )
    return "\n".join(rows)


START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def write(readme: Path) -> None:
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{settings_table()}\n{END}{tail}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write(Path(sys.argv[2]))
    else:
        print(settings_table())
