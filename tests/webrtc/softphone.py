"""One softphone call, as a person would place it, for any browser driver.

The Chromium test drives the page with Playwright, the Firefox test with WebDriver (geckodriver):
both run this same scenario through the small :class:`PageDriver` interface, so the two browsers
are held to exactly the same assertions. What is asserted is what a person would notice: the
agent's voice arrived (audio energy in the browser's inbound RTP stats), the transcript lines are
on the page, and the call got its disposition - on the page and in the database - with no peer
connection or call left behind.
"""

from __future__ import annotations

import time
import wave
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import psycopg

from media_nodes.simulator.webrtc_caller import load_wav_48k
from tests.webrtc.conftest import AUDIO, RunningNode

RATE = 48000


class PageDriver(Protocol):
    def open(self, url: str) -> None: ...

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression on the page (JSON-like)."""
        ...

    def click(self, button: str) -> None:
        """Click the button with this visible name."""
        ...

    def console(self) -> list[str]:
        """The page's console messages so far (for a failure's report)."""
        ...


def mic_file(folder: Path, *, lead_s: float = 12.0, tail_s: float = 20.0) -> Path:
    """Silence (the caller lets the greeting finish), a question about an order, silence: a
    48 kHz mono WAV to play as the browser's microphone."""
    speech = load_wav_48k(AUDIO / "order_status.wav")
    audio = np.concatenate(
        [
            np.zeros(int(lead_s * RATE), np.int16),
            speech,
            np.zeros(int(tail_s * RATE), np.int16),
        ]
    )
    path = folder / "mic.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(audio.astype("<i2").tobytes())
    return path


def wait_for(page: PageDriver, condition: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not page.js(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s:.0f} s: {condition}")
        time.sleep(0.2)


def _energy(page: PageDriver) -> float:
    """Total audio energy the browser has received on the agent's track (inbound RTP stats)."""
    time.sleep(0.3)  # one more stats poll
    return float(page.js("window.parleyPhone.audioEnergy"))


def call_the_example_agent(
    page: PageDriver, node: RunningNode, database_url: str, *, on_call: Any = None
) -> None:
    """Open /phone, call acme-shop, hear the greeting and an answer, mute, hang up, and check
    the disposition in the database. ``on_call`` runs right after Call is clicked (to start a
    microphone that is not the browser's own)."""
    try:
        page.open(f"{node.http}/phone?raw=1&agent=acme-shop")
        wait_for(page, "document.querySelector('#agent').value === 'acme-shop'", 10)
        page.click("Call")
        if on_call is not None:
            on_call()

        wait_for(page, "window.parleyPhone.phase === 'in-call'", 20)
        # The greeting is heard, then the caller's words are transcribed...
        wait_for(page, "window.parleyPhone.lines.some(l => l.role === 'caller')", 60)
        heard_before_answer = _energy(page)
        assert heard_before_answer > 0.01, "the greeting was not heard in the browser"
        # ... and the agent answers them (turn 1): audio arrives and the line is shown.
        wait_for(
            page,
            "window.parleyPhone.lines.some(l => l.role === 'agent' && l.turn >= 1)"
            " && window.parleyPhone.latencies.length > 0",
            60,
        )
        answer_energy = _energy(page) - heard_before_answer
        assert answer_energy > 0.01, "the agent's answer was not heard in the browser"
        transcript = str(page.js("document.querySelector('#transcript').innerText"))
        assert "You:" in transcript and "Agent:" in transcript
        assert "order" in transcript.lower()
        assert page.js("document.querySelectorAll('#latency tbody tr').length") >= 1

        page.click("Mute")
        assert page.js("document.querySelector('#mute').getAttribute('aria-pressed')") == "true"
        assert page.js("window.parleyPhone.muted") is True
        page.click("Hang up")
        wait_for(page, "window.parleyPhone.ended !== null", 30)
        state: dict[str, Any] = page.js("({...window.parleyPhone})")
        assert state["ended"] == "caller_hung_up"
        assert state["disposition"], state
        assert page.js("!document.querySelector('#outcome').hidden")
        assert "Call ended" in str(page.js("document.querySelector('#status').innerText"))
        assert not state["errors"], state["errors"]
    except Exception:
        print("\n".join(page.console()[-40:]))
        raise

    assert node.wait_idle() == (0, 0)
    row = None
    for _ in range(50):
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT disposition, channel FROM calls WHERE call_id = %s", (state["callId"],)
            ).fetchone()
        if row and row[0]:
            break
        time.sleep(0.1)
    assert row is not None and row[0] == state["disposition"] and row[1] == "webrtc"
