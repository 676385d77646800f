"""The newcomer contract: README commands, CI script, services script, settings documented."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from functions.common.config import FunctionSettings
from shared.settings import ENV_PREFIX

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def first_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block, "README has no bash block with the first commands"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_demo_then_test() -> None:
    assert first_commands() == ["make demo", "make test"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [
        line.strip() for line in ci if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == [first_commands()[1]]


def dry_run(target: str, venv: Path) -> list[str]:
    """The commands ``make TARGET`` would run for a newcomer (nothing installed in ``venv``)."""
    # Run as a newcomer would, not as a sub-make of `make test` (whose flags print directories).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return proc.stdout.splitlines()


def test_make_demo_installs_only_the_demo_set(tmp_path: Path) -> None:
    demo = dry_run("demo", tmp_path / "venv")
    assert f"VENV={tmp_path / 'venv'} scripts/setup demo" in demo
    assert not any("setup test" in line for line in demo)
    assert demo[-1] == f"{tmp_path / 'venv'}/bin/parley demo"
    test = dry_run("test", tmp_path / "venv")
    assert f"VENV={tmp_path / 'venv'} scripts/setup test" in test


def test_setup_knows_its_two_sets() -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "setup"), "everything"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "usage: scripts/setup [demo|test]" in proc.stderr


def test_readme_says_how_long_each_first_command_takes() -> None:
    quick_start = README.split("## Architecture")[0]
    for command in first_commands():
        row = next((line for line in quick_start.splitlines() if f"| `{command}`" in line), "")
        assert re.search(r"\d+ (s|min)", row), f"README gives no duration for {command}"


def test_every_setting_is_documented() -> None:
    missing = [
        f"{ENV_PREFIX}{name.upper()}"
        for name in FunctionSettings.model_fields
        if f"`{ENV_PREFIX}{name.upper()}`" not in README
    ]
    assert not missing, f"README settings table lacks {missing}: run scripts/settings_table.py"


def test_services_script_rejects_unknown_service() -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "services"), "status", "mongodb"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "unknown service 'mongodb'" in proc.stderr


@pytest.mark.integration
def test_services_script_reports_each_server(
    database_url: str, redis_url: str, kafka_bootstrap: str
) -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "services"), "status"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["postgres", "redis", "kafka"]
    assert all(" up on 127.0.0.1:" in line for line in proc.stdout.splitlines())
