"""The same softphone call in real headless Firefox (Debian's firefox-esr, driven by geckodriver).

Firefox has no "file as microphone" switch, so the test gives it a sound system of its own: a
private PulseAudio server with two null sinks. The browser plays the agent into ``speaker``;
its microphone is the monitor of ``mic``, into which ``paplay`` plays the caller's WAV once the
call is placed. The page is the one a person opens: real ``getUserMedia``, real WebRTC to the
node over loopback, and the scenario in ``softphone.py`` that the Chromium test runs too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.firefox.service import Service

from tests.webrtc.conftest import RunningNode
from tests.webrtc.softphone import call_the_example_agent, mic_file

pytestmark = pytest.mark.integration

PREFS: dict[str, Any] = {
    "media.navigator.permission.disabled": True,  # the test is the person who clicks "Allow"
    "media.peerconnection.ice.loopback": True,  # the node listens on 127.0.0.1 only
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.autoplay.default": 0,
}
# Keep the console: WebDriver has no console log for Firefox, so the page's own calls are kept.
KEEP_CONSOLE = """
window.__console = [];
for (const level of ["log", "info", "warn", "error"]) {
  const original = console[level].bind(console);
  console[level] = (...args) => {
    window.__console.push(level + ": " + args.join(" "));
    original(...args);
  };
}
window.addEventListener("error", (e) => window.__console.push("uncaught: " + e.message));
"""


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path.home() / ".cargo" / "bin"))
    if path is None:
        pytest.fail(f"{name} is missing: {package} (scripts/setup installs it)", pytrace=False)
    return path


class WebDriverPage:
    def __init__(self, driver: webdriver.Firefox) -> None:
        self.driver = driver

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.driver.execute_script(KEEP_CONSOLE)

    def js(self, expression: str) -> Any:
        return self.driver.execute_script(f"return ({expression});")

    def click(self, button: str) -> None:
        self.driver.find_element(By.XPATH, f"//button[normalize-space(.)='{button}']").click()

    def console(self) -> list[str]:
        return list(self.js("window.__console || []"))


@pytest.fixture
def sound_system(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private PulseAudio server: the environment that points programs at it."""
    pulseaudio = _tool("pulseaudio", "apt-get install pulseaudio")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    server = subprocess.Popen(
        [
            pulseaudio, "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
            "--load=module-native-protocol-unix",
            "--load=module-null-sink sink_name=speaker",
            "--load=module-null-sink sink_name=mic",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                error = server.stderr.read().decode() if server.stderr else ""
                pytest.fail(f"PulseAudio did not start: {error[-500:]}", pytrace=False)
            time.sleep(0.1)
        for command in (["set-default-sink", "speaker"], ["set-default-source", "mic.monitor"]):
            subprocess.run(["pactl", *command], env=env, check=True)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def firefox_page(sound_system: dict[str, str]) -> Iterator[WebDriverPage]:
    firefox = _tool("firefox-esr", "apt-get install firefox-esr")
    geckodriver = _tool("geckodriver", "cargo install --locked geckodriver")
    options = webdriver.FirefoxOptions()
    options.binary_location = firefox
    options.add_argument("-headless")
    for name, value in PREFS.items():
        options.set_preference(name, value)
    driver = webdriver.Firefox(
        options=options,
        service=Service(geckodriver, env=sound_system, log_output=subprocess.DEVNULL),
    )
    try:
        yield WebDriverPage(driver)
    finally:
        driver.quit()


def test_firefox_calls_the_example_agent(
    media_node: RunningNode,
    firefox_page: WebDriverPage,
    sound_system: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    mic = mic_file(tmp_path)
    players: list[subprocess.Popen[bytes]] = []

    def speak() -> None:
        players.append(subprocess.Popen(["paplay", "--device=mic", str(mic)], env=sound_system))

    try:
        call_the_example_agent(firefox_page, media_node, database_url, on_call=speak)
    finally:
        for player in players:
            player.terminate()
            player.wait(timeout=10)
    assert players, "the caller's microphone never started"
