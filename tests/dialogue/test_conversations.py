"""The example agent's conversation scripts, the runner's diffs, and `parley agent` exit codes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from media_nodes.dialogue.cli import app
from media_nodes.dialogue.engine import AgentSession
from media_nodes.dialogue.runtime import AgentRuntime
from media_nodes.dialogue.testing import Script, load_script, run_script

from .conftest import DENTAL_AGENT, EXAMPLE_AGENT

SCRIPTS = sorted(
    p for p in (EXAMPLE_AGENT / "tests").glob("*.yaml") if p.name != "paraphrases.yaml"
)
DENTAL_SCRIPTS = sorted((DENTAL_AGENT / "tests").glob("*.yaml"))


def session_maker(runtime: AgentRuntime, script: Script):  # type: ignore[no-untyped-def]
    async def make(client: httpx.AsyncClient, _state: Callable[[], str]) -> AgentSession:
        return AgentSession(
            replace(runtime, http=client),
            call_id="t",
            variables=script.variables,
            started_at=script.now,
        )

    return make


def test_example_ships_scripts() -> None:
    assert len(SCRIPTS) >= 6


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
async def test_example_script_passes(path: Path, acme_runtime: AgentRuntime) -> None:
    script = load_script(path)
    result = await run_script(script, session_maker(acme_runtime, script))
    assert result.ok, str(result.mismatch)


def test_dental_example_ships_scripts() -> None:
    assert len(DENTAL_SCRIPTS) >= 6


@pytest.mark.parametrize("path", DENTAL_SCRIPTS, ids=lambda p: p.stem)
async def test_dental_script_passes(path: Path, dental_runtime: AgentRuntime) -> None:
    script = load_script(path)
    result = await run_script(script, session_maker(dental_runtime, script))
    assert result.ok, str(result.mismatch)


async def test_mismatch_is_reported_as_a_diff(acme_runtime: AgentRuntime) -> None:
    script = Script.model_validate(
        {
            "turns": [
                {"expect": {"state": "main_menu"}},
                {"user": "where is my order", "expect": {"state": "billing"}},
                {"user": "never reached"},
            ]
        }
    )
    result = await run_script(script, session_maker(acme_runtime, script))
    assert result.mismatch is not None
    assert result.mismatch.turn == 1
    assert str(result.mismatch).splitlines() == [
        "turn 1 (user: where is my order): state differs",
        '  - expected: "billing"',
        '  + actual:   "get_order_number"',
    ]
    assert len(result.turns) == 2


async def test_unscripted_tool_call_fails_the_script(acme_runtime: AgentRuntime) -> None:
    script = Script.model_validate(
        {"turns": [{}, {"user": "where is my order"}, {"dtmf": "4567"}, {"dtmf": "1"}]}
    )
    result = await run_script(script, session_maker(acme_runtime, script))
    assert result.mismatch is not None and result.mismatch.field == "tools"


def test_cli_validate_and_test_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(EXAMPLE_AGENT / "agent.yaml")])
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "agent.yaml"
    bad.write_text(
        (EXAMPLE_AGENT / "agent.yaml").read_text().replace("next: lookup_order", "next: lookup")
    )
    invalid = runner.invoke(app, ["validate", str(bad)])
    assert invalid.exit_code == 1
    assert (
        "unknown state 'lookup'" in invalid.output
        and "states.get_order_number.next" in invalid.output
    )

    passing = runner.invoke(
        app, ["test", str(EXAMPLE_AGENT), "--script", str(EXAMPLE_AGENT / "tests/billing.yaml")]
    )
    assert passing.exit_code == 0, passing.output
    assert passing.output.startswith("PASS")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "turns:\n  - expect: {state: main_menu}\n  - user: bye\n    expect: {intent: human}\n"
    )
    failing = runner.invoke(app, ["test", str(EXAMPLE_AGENT), "--script", str(wrong)])
    assert failing.exit_code == 1
    assert "turn 1 (user: bye): intent differs" in failing.output
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("turns: 3\n")
    assert runner.invoke(app, ["test", str(EXAMPLE_AGENT), "--script", str(garbled)]).exit_code == 2


def test_cli_runs_a_folder_and_reports_every_failure(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "a_wrong.yaml").write_text(
        "turns:\n  - expect: {state: main_menu}\n  - user: bye\n    expect: {intent: human}\n"
    )
    (folder / "b_right.yaml").write_text((EXAMPLE_AGENT / "tests/billing.yaml").read_text())
    (folder / "c_wrong.yaml").write_text("turns:\n  - expect: {state: billing}\n")
    result = runner.invoke(app, ["test", str(EXAMPLE_AGENT), str(folder)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[0] for line in lines] == ["FAIL", "PASS", "FAIL"]
    assert result.output.rstrip().endswith("1 passed, 2 failed")


def test_cli_runs_the_agents_own_tests_by_default() -> None:
    result = CliRunner().invoke(app, ["test", str(DENTAL_AGENT)])
    assert result.exit_code == 0, result.output
    assert f"{len(DENTAL_SCRIPTS)} passed, 0 failed" in result.output
