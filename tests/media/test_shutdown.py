"""SIGTERM drains: no new calls, the active call finishes normally, then the process exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from media_nodes.simulator.caller import call
from tests.media.conftest import PATIENT, ROOT, clip, free_port


async def _wait_ready(base: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"media node exited early with {process.returncode}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("media node never became ready")


async def test_sigterm_drains_active_calls(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_DATA_DIR": str(tmp_path),
        "PARLEY_SHUTDOWN_GRACE_S": "60",
        "HF_HUB_OFFLINE": "1",
    }
    process = subprocess.Popen(  # noqa: ASYNC220 - a server process, started once
        [sys.executable, "-m", "media_nodes.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/twilio/stream"
    try:
        await _wait_ready(base, process)
        active = asyncio.create_task(call(url, [clip("opening_hours"), clip("yes")], **PATIENT))
        await asyncio.sleep(3)  # the greeting is playing
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=base) as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["draining"]
        refused = await call(url, [], **PATIENT)
        assert refused.close_code == 1013 and refused.greeting_ms is None
        result = await active
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read().decode() if process.stdout else ""
    assert all(turn.latency_ms is not None for turn in result.turns), output[-2000:]
    assert not result.closed_by_agent, "the caller hung up, not the draining node"
    assert "Traceback" not in output, output[-2000:]
