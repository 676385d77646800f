"""End to end in real headless Chromium: /phone, a WAV as the microphone, the example agent.

Chromium's fake microphone loops a file made of the caller's words between long silences (the
caller lets the greeting finish, then asks about an order); Playwright drives the page through
the scenario in ``softphone.py`` that the Firefox test runs too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.webrtc.conftest import RunningNode
from tests.webrtc.softphone import call_the_example_agent, mic_file

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"


class PlaywrightPage:
    def __init__(self, page: Page) -> None:
        self.page = page
        self._console: list[str] = []
        page.on("console", lambda m: self._console.append(f"{m.type}: {m.text}"))

    def open(self, url: str) -> None:
        self.page.goto(url)

    def js(self, expression: str) -> Any:
        return self.page.evaluate(f"() => ({expression})")

    def click(self, button: str) -> None:
        self.page.get_by_role("button", name=button, exact=True).click()

    def console(self) -> list[str]:
        return self._console


@pytest.fixture
def chromium_page(tmp_path: Path) -> Iterator[PlaywrightPage]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    mic = mic_file(tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
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
            yield PlaywrightPage(browser.new_context().new_page())
        finally:
            browser.close()


def test_chromium_calls_the_example_agent(
    media_node: RunningNode, chromium_page: PlaywrightPage, database_url: str
) -> None:
    call_the_example_agent(chromium_page, media_node, database_url)
