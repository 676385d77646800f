"""A real media node for the WebRTC tests: uvicorn in a thread of its own, real models, the
example agent, embedded bus projecting into this run's PostgreSQL database.

The node runs on its own event loop (as a remote server would), so the test's aiortc caller or
browser and the node never share a loop.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiortc import RTCPeerConnection

from media_nodes.app import create_app
from media_nodes.server import DrainingServer, build_server
from media_nodes.simulator.webrtc_caller import ScriptedMic
from media_nodes.transports.webrtc import allow_loopback_ice
from media_nodes.transports.webrtc_routes import peer_registry
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
AUDIO = ROOT / "examples" / "audio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def offer_sdp(*, audio: str | None = "sendrecv", video: bool = False) -> str:
    """A real aiortc offer: with a microphone, a receive-only audio section, or none."""
    allow_loopback_ice(True)
    pc = RTCPeerConnection()
    try:
        if audio == "sendrecv":
            pc.addTrack(ScriptedMic())
        elif audio is not None:
            pc.addTransceiver("audio", direction=audio)
        if video:
            pc.addTransceiver("video", direction="recvonly")
        if audio is None and not video:
            pc.createDataChannel("chat")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


@dataclass
class RunningNode:
    settings: Settings
    server: DrainingServer
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def signal_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/webrtc/signal"

    @property
    def app(self) -> object:
        return self.server.config.app

    def peers(self) -> int:
        return len(peer_registry(self.server.config.app))  # type: ignore[arg-type]

    def active_calls(self) -> int:
        return len(self.server.config.app.state.node.calls)  # type: ignore[attr-defined]

    def wait_idle(self, timeout_s: float = 20.0) -> tuple[int, int]:
        """Peer connections and calls, once both are zero or the time is up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (self.peers() or self.active_calls()):
            time.sleep(0.05)
        return self.peers(), self.active_calls()


@pytest.fixture(scope="session")
def media_node(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningNode]:
    settings = load_settings(
        env="test",
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("webrtc-node"),
        agents_dir=ROOT / "examples" / "agents",
        allow_unsigned_streams=True,
        webrtc_loopback_ice=True,
        shutdown_grace_s=2,
    )
    port = free_port()
    server = build_server("127.0.0.1", port, settings, app=create_app(settings))
    thread = threading.Thread(target=server.run, name="media-node", daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if not thread.is_alive():
            pytest.fail("the media node did not start (see the log above)", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail("the media node was not ready within 180 s", pytrace=False)
        time.sleep(0.2)
    yield RunningNode(settings=settings, server=server, port=port)
    server.should_exit = True
    thread.join(timeout=30)
