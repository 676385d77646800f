"""The two pinned sets: requirements/lock.txt is what Parley runs (the demo, the images), nothing
more; requirements/test-lock.txt adds what only the tests need, with the same pins.

Both are checked against the dependency metadata of the installed packages (``make test``
installed the test set), starting from pyproject.toml: a package the runtime needs but its lock
lacks, or a test-only package slipped into it, fails here.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME_EXTRAS = ("piper",)  # the demo speaks with Piper, as the images may
TEST_EXTRAS = ("dev", "infra")
RUNTIME_SOURCES = ("parley", "shared", "functions", "media_nodes")


def pins(name: str) -> dict[str, str]:
    """name -> version of a lock file made by ``uv pip compile``."""
    found = {}
    for line in (REQUIREMENTS / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def closure(requirements: list[str]) -> set[str]:
    """Every distribution these requirements pull in on this machine, by installed metadata."""
    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        extras = sorted(requirement.extras)
        key = f"{name}[{','.join(extras)}]"
        if key in seen:
            continue
        seen.add(key)
        requires = metadata.distribution(name).requires or []
        for wanted in ["", *extras]:
            todo.extend((Requirement(r), wanted) for r in requires)
    return {key.split("[")[0] for key in seen}


def project_requirements(*extras: str) -> list[str]:
    project = PYPROJECT["project"]
    listed = list(project["dependencies"])
    for extra in extras:
        listed += project["optional-dependencies"][extra]
    return listed


def test_runtime_lock_holds_exactly_what_the_runtime_needs() -> None:
    locked = set(pins("lock.txt"))
    needed = closure(project_requirements(*RUNTIME_EXTRAS))
    assert not needed - locked, f"the runtime needs these, lock.txt lacks them: {needed - locked}"
    assert not locked - needed, (
        f"lock.txt pins what the runtime does not need (test-only?): {sorted(locked - needed)}"
    )


def test_no_test_extra_reaches_the_runtime_lock() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    test_only = {canonicalize_name(Requirement(r).name) for x in TEST_EXTRAS for r in extras[x]}
    assert not test_only & set(pins("lock.txt")), test_only & set(pins("lock.txt"))


def test_test_lock_is_the_runtime_lock_plus_the_test_packages() -> None:
    runtime, everything = pins("lock.txt"), pins("test-lock.txt")
    differ = {n: (v, everything.get(n)) for n, v in runtime.items() if everything.get(n) != v}
    assert not differ, f"test-lock.txt pins these differently from lock.txt: {differ}"
    needed = closure(project_requirements(*RUNTIME_EXTRAS, *TEST_EXTRAS))
    assert set(everything) == needed, (
        f"missing: {needed - set(everything)}, not needed: {set(everything) - needed}"
    )


def test_installed_versions_are_the_locked_ones() -> None:
    wrong = {
        name: (version, metadata.version(name))
        for name, version in pins("test-lock.txt").items()
        if metadata.version(name) != version
    }
    assert not wrong, f"installed versions differ from test-lock.txt (run make setup): {wrong}"


def test_no_deps_packages_are_split_by_who_imports_them() -> None:
    """The --no-deps model packages: the runtime's in no-deps.txt, the tests' in
    test-no-deps.txt (told apart by whether runtime code names the module)."""
    runtime_code = "\n".join(
        path.read_text() for top in RUNTIME_SOURCES for path in (ROOT / top).rglob("*.py")
    )
    for name, used_at_runtime in (("no-deps.txt", True), ("test-no-deps.txt", False)):
        for package in pins(name):
            module = package.replace("-", "_")
            assert (module in runtime_code) is used_at_runtime, (name, package)
