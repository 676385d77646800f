"""`make demo`'s call, end to end: webhook -> TwiML -> media node -> caller audio -> PostgreSQL
-> analytics API. Slow (a real-time call of about 40 s), and the newcomer's first impression.

It runs ``parley demo`` itself, in a Python that sees only the demo's packages
(requirements/lock.txt + no-deps.txt: see environment.py), as ``scripts/setup demo`` installs
them: the demo must need nothing that only the tests install.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.demo.environment import ROOT, demo_python, demo_site

pytestmark = pytest.mark.integration


def test_the_demo_call_is_answered_and_stored(database_url: str, tmp_path: Path) -> None:
    site = demo_site(tmp_path / "site-packages")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "HF_HUB_OFFLINE": "1",
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
    }
    out, result_file = tmp_path / "agent.wav", tmp_path / "result.json"
    command = [*demo_python(site), "demo", "--out", str(out), "--result", str(result_file)]
    proc = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    shown = proc.stdout
    assert proc.returncode == 0, shown + proc.stderr
    result = json.loads(result_file.read_text())

    call = result["call"]
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
    assert all(ms is not None and ms > 0 for ms in result["caller_latency_ms"])
    assert out.stat().st_size > 8000 * 2 * 10  # > 10 s of agent audio
    assert "escalated_to_human" in shown and "caller │" in shown
    assert "routes to acme-shop" in shown
    # The freshly uploaded version was compiled when it was activated, not by the call.
    assert "prepared acme-shop v1 on its activation" in shown
    assert result["compiled_during_call"] == 0
    assert result["greeting_ms"] is not None
