"""`make demo`'s call, end to end: webhook -> TwiML -> media node -> caller audio -> PostgreSQL
-> analytics API. Slow (a real-time call of about 40 s), and the newcomer's first impression."""

from __future__ import annotations

from pathlib import Path

import pytest

from media_nodes.simulator.demo import render, run_demo
from shared.settings import load_settings

pytestmark = pytest.mark.integration


async def test_the_demo_call_is_answered_and_stored(database_url: str, tmp_path: Path) -> None:
    settings = load_settings(database_url=database_url, data_dir=tmp_path / "data")
    said: list[str] = []
    result = await run_demo(settings, say=said.append, out=tmp_path / "agent.wav")

    call = result.call
    assert call["status"] == "completed"
    assert call["disposition"] == "escalated_to_human"
    assert {"order_status", "human"} <= set(call["intents"])
    assert call["slots"].get("order_number") == "4572"
    caller = " ".join(t["text"] for t in call["turns"] if t["speaker"] == "caller").lower()
    agent = " ".join(t["text"] for t in call["turns"] if t["speaker"] == "agent").lower()
    for word in ("order", "status", "right", "person"):
        assert word in caller, (word, caller)
    assert "out for delivery" in agent  # the order was looked up through the shop's API
    assert len(call["latency"]) >= 4
    assert all(ms is not None and ms > 0 for ms in result.caller_latency_ms)
    assert (tmp_path / "agent.wav").stat().st_size > 8000 * 2 * 10  # > 10 s of agent audio
    shown = render(result)
    assert "escalated_to_human" in shown and "caller │" in shown
    assert any("routes to acme-shop" in line for line in said)
