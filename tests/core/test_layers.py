"""The layers of docs/architecture.md, read from the code: ``shared/`` is the bottom layer and
imports no area above it; only the ``parley`` composition root imports every area."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AREAS = ("functions", "media_nodes")
ROOT_PACKAGE = "parley"


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules under {package}/"
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imported_packages(path) & set(forbidden))
    ]


def test_shared_imports_no_area_above_it() -> None:
    assert offenders("shared", (*AREAS, ROOT_PACKAGE)) == []


@pytest.mark.parametrize("area", AREAS)
def test_no_area_imports_the_composition_root(area: str) -> None:
    assert offenders(area, (ROOT_PACKAGE,)) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from media_nodes.tts import engines\n    import functions.cli\n"
    )
    assert imported_packages(module) >= {"media_nodes", "functions"}
