"""End to end in real headless Chromium: /phone, a WAV as the microphone, the example agent.

The browser's fake microphone loops a file made of the caller's words between long silences
(the caller lets the greeting finish, then asks about an order). The test asserts what a person
would notice: the agent's voice arrived (audio energy in the browser's inbound RTP stats), the
transcript lines are on the page, and the call got its disposition - on the page and in the
database - with no peer connection or call left behind.
"""

from __future__ import annotations

import asyncio
import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from playwright.async_api import Browser, Page, async_playwright

from media_nodes.transports.webrtc_caller import load_wav_48k
from tests.webrtc.conftest import AUDIO, RunningNode

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
RATE = 48000


def mic_file(folder: Path, *, lead_s: float, words: Path, tail_s: float) -> Path:
    """Silence, the caller's words, silence: a 48 kHz mono WAV for Chromium's fake microphone."""
    speech = load_wav_48k(words)
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


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    mic = mic_file(tmp_path, lead_s=12.0, words=AUDIO / "order_status.wav", tail_s=20.0)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def _state(page: Page) -> dict[str, object]:
    state: dict[str, object] = await page.evaluate("() => ({...window.parleyPhone})")
    return state


async def _energy(page: Page) -> float:
    """Total audio energy the browser has played from the agent's track (inbound RTP stats)."""
    await page.wait_for_timeout(300)  # one more stats poll
    energy: float = await page.evaluate("() => window.parleyPhone.audioEnergy")
    return energy


async def _wait_for(page: Page, condition: str, timeout_s: float) -> None:
    await page.wait_for_function(condition, timeout=timeout_s * 1000, polling=200)


async def test_browser_calls_the_example_agent(
    media_node: RunningNode, browser: Browser, database_url: str
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    try:
        await page.goto(f"{media_node.http}/phone?raw=1&agent=acme-shop")
        await page.get_by_label("Agent", exact=True).wait_for()
        await _wait_for(page, "() => document.querySelector('#agent').value === 'acme-shop'", 10)
        await page.get_by_role("button", name="Call").click()

        await _wait_for(page, "() => window.parleyPhone.phase === 'in-call'", 20)
        # The greeting is heard, then the caller's words are transcribed...
        await _wait_for(page, "() => window.parleyPhone.lines.some(l => l.role === 'caller')", 60)
        heard_before_answer = await _energy(page)
        assert heard_before_answer > 0.01, "the greeting was not heard in the browser"
        # ... and the agent answers them (turn 1): audio arrives and the line is shown.
        await _wait_for(
            page,
            "() => window.parleyPhone.lines.some(l => l.role === 'agent' && l.turn >= 1)"
            " && window.parleyPhone.latencies.length > 0",
            60,
        )
        answer_energy = await _energy(page) - heard_before_answer
        assert answer_energy > 0.01, "the agent's answer was not heard in the browser"
        transcript = await page.locator("#transcript").inner_text()
        assert "You:" in transcript and "Agent:" in transcript
        assert "order" in transcript.lower()
        assert await page.locator("#latency tbody tr").count() >= 1

        mute = page.get_by_role("button", name="Mute")
        await mute.click()
        assert await mute.get_attribute("aria-pressed") == "true"
        assert await page.evaluate("() => window.parleyPhone.muted")
        await page.get_by_role("button", name="Hang up").click()
        await _wait_for(page, "() => window.parleyPhone.ended !== null", 30)
        state = await _state(page)
        assert state["ended"] == "caller_hung_up"
        assert state["disposition"], state
        assert await page.locator("#outcome").is_visible()
        assert "Call ended" in (await page.locator("#status").inner_text())
        assert not state["errors"], state["errors"]
        call_id = state["callId"]
    except Exception:
        print("\n".join(console[-40:]))
        raise
    finally:
        await context.close()

    assert media_node.wait_idle() == (0, 0)
    row = None
    for _ in range(50):
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute(
                "SELECT disposition, channel FROM calls WHERE call_id = %s", (call_id,)
            )
            row = await cursor.fetchone()
        if row and row[0]:
            break
        await asyncio.sleep(0.1)
    assert row is not None and row[0] == state["disposition"] and row[1] == "webrtc"
