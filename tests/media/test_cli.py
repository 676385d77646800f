"""The media commands' command-line behaviour: clear errors, no stack traces."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from media_nodes.cli import app as media_app
from media_nodes.simulator.cli import call_command
from tests.media.conftest import AUDIO, free_port

cli = typer.Typer()
cli.add_typer(media_app, name="media")
cli.command("call")(call_command)
runner = CliRunner()


def test_help_lists_the_commands() -> None:
    assert "serve" in runner.invoke(cli, ["media", "--help"]).output
    out = runner.invoke(cli, ["call", "--help"]).output
    assert "--say" in out and "--barge-in-after" in out and "--webhook" in out


def test_call_with_unreadable_audio_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    result = runner.invoke(cli, ["call", "--say", str(bad)])
    assert result.exit_code == 2
    assert "cannot read" in result.output and "Traceback" not in result.output


def test_call_to_a_dead_node_fails_clearly() -> None:
    url = f"ws://127.0.0.1:{free_port()}/twilio/stream"
    result = runner.invoke(cli, ["call", "--url", url, "--say", str(AUDIO / "yes.wav")])
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output


def test_bad_parameter_syntax_is_refused() -> None:
    result = runner.invoke(cli, ["call", "--say", str(AUDIO / "yes.wav"), "-p", "novalue"])
    assert result.exit_code == 2 and "name=value" in result.output
