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

from .conftest import EXAMPLE_AGENT

SCRIPTS = sorted(
    p for p in (EXAMPLE_AGENT / "tests").glob("*.yaml") if p.name != "paraphrases.yaml"
)


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
