"""The command line: help on every command, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parley.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_parley_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "demo",
        "call",
        "media",
        "webrtc",
        "api",
        "tenant",
        "agent",
        "events",
        "db",
        "check",
    ):
        assert command in result.output


def test_every_command_has_help() -> None:
    import typer.main

    group = typer.main.get_command(app)

    def walk(cmd: object, path: list[str]) -> list[list[str]]:
        subs = getattr(cmd, "commands", {})
        paths = [path]
        for name, sub in subs.items():
            paths += walk(sub, [*path, name])
        return paths

    for path in walk(group, []):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_schemas_check_passes_on_committed_files() -> None:
    result = runner.invoke(
        app, ["events", "schemas", "--check", "--out", str(ROOT / "events/schemas")]
    )
    assert result.exit_code == 0, result.output


def test_schemas_check_fails_on_drift(tmp_path: Path) -> None:
    (tmp_path / "event.schema.json").write_text("{}\n")
    result = runner.invoke(app, ["events", "schemas", "--check", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "out of date" in result.output


def test_invalid_setting_is_a_clear_error_not_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "parley", "db", "migrate"],
        env={"PARLEY_DATABASE_URL": "mysql://nope", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "PARLEY_DATABASE_URL" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_migrate_against_a_stopped_server_names_it() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "parley", "db", "migrate"],
        env={"PARLEY_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/parley", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "PostgreSQL at 127.0.0.1:1/parley is unavailable" in proc.stderr
    assert "Traceback" not in proc.stderr
