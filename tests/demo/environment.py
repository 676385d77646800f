"""A Python environment holding only the demo's packages, made from the installed test set.

``demo_site(folder)`` fills ``folder`` with links to the files of exactly the distributions that
requirements/lock.txt and requirements/no-deps.txt pin (as installed in this venv), so a Python
started with ``-I -S`` and only that folder on its path imports what ``scripts/setup demo`` would
have installed, and nothing else: a test-only package is as absent as on a newcomer's machine.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEMO_REQUIREMENTS = ("lock.txt", "no-deps.txt")


def demo_distributions() -> set[str]:
    names = {"parley"}
    for name in DEMO_REQUIREMENTS:
        for line in (ROOT / "requirements" / name).read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9._-]+)==", line)
            if match:
                names.add(canonicalize_name(match.group(1)))
    return names


def _owners(site: Path) -> dict[tuple[str, ...], set[str]]:
    """Relative path parts of every installed file under ``site`` -> the distributions owning it."""
    owners: dict[tuple[str, ...], set[str]] = {}
    for dist in metadata.distributions(path=[str(site)]):
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or []:
            parts = Path(file).parts
            if not parts or parts[0] == ".." or "__pycache__" in parts:
                continue  # scripts outside site-packages, byte code
            owners.setdefault(parts, set()).add(name)
    return owners


def demo_site(folder: Path) -> Path:
    """Link the demo distributions' files of this venv's site-packages into ``folder``.

    A folder owned only by demo distributions is linked whole (its byte code comes along); one
    shared with other distributions (a namespace package) is entered and linked file by file.
    """
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    wanted = demo_distributions()
    owners = _owners(site)
    missing = wanted - {n for names in owners.values() for n in names}
    if missing:
        raise RuntimeError(f"not installed in this venv (run make setup): {sorted(missing)}")

    def link(prefix: tuple[str, ...]) -> None:
        children: dict[str, set[str]] = {}
        for parts, names in owners.items():
            if parts[: len(prefix)] == prefix and len(parts) > len(prefix):
                children.setdefault(parts[len(prefix)], set()).update(names)
        for child, names in children.items():
            path = (*prefix, child)
            if not names & wanted:
                continue
            target = folder.joinpath(*path)
            if names <= wanted or (site.joinpath(*path)).is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(site.joinpath(*path))
            else:
                target.mkdir(parents=True, exist_ok=True)
                link(path)

    folder.mkdir(parents=True, exist_ok=True)
    link(())
    return folder


def demo_python(site: Path) -> list[str]:
    """The command line of a Python that sees only ``site`` and the project."""
    boot = (
        "import site, sys; "
        f"site.addsitedir({str(site)!r}); sys.path.insert(0, {str(ROOT)!r}); "
        "sys.argv[0] = 'parley'; from parley.cli import main; main()"
    )
    return [sys.executable, "-I", "-S", "-c", boot]
