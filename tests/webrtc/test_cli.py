"""``parley webrtc call`` and ``parley webrtc token``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from media_nodes.transports.webrtc_cli import app
from shared.settings import get_settings
from shared.tokens import verify
from tests.webrtc.conftest import AUDIO, RunningNode

runner = CliRunner()


def test_token_is_signed_for_the_agent() -> None:
    result = runner.invoke(app, ["token", "--agent", "acme-shop", "--ttl", "30"])
    assert result.exit_code == 0, result.output
    claims = verify(result.output.strip(), secret=get_settings().session_token_secret)
    assert claims.agent_id == "acme-shop" and claims.tenant_id == "default"


def test_call_needs_existing_wavs() -> None:
    result = runner.invoke(app, ["call", "--say", "/no/such/file.wav"])
    assert result.exit_code == 2
    assert "does not exist" in result.output


@pytest.mark.integration
def test_call_prints_the_conversation(media_node: RunningNode) -> None:
    result = runner.invoke(
        app, ["call", "--url", media_node.signal_url, "--say", str(AUDIO / "opening_hours.wav")]
    )
    assert result.exit_code == 0, result.output
    assert "agent  [0]: Hi, thanks for calling Acme Shop" in result.output
    assert "caller [1]:" in result.output and "hours" in result.output.lower()
    assert "voice-to-voice at the caller" in result.output
    assert "ended: caller_hung_up" in result.output
    assert media_node.wait_idle() == (0, 0)
