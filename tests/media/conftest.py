"""Media-node fixtures: real models loaded once per session, a real node per test.

A node runs under uvicorn on a free loopback port in the test's event loop, with the real dialogue
engine (example agent ``acme-shop``), the real models, an in-process bus and - when a test asks for
``projected`` - the embedded projector writing into this run's PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from media_nodes.app import create_app
from media_nodes.metrics import MediaMetrics
from media_nodes.models import Models, load_models
from media_nodes.pipeline.node import MediaNode
from media_nodes.server import DrainingServer
from media_nodes.simulator.caller import Say, load_wav
from shared.bus import EventBus, InProcessBus, call_events_topic
from shared.cache.memory import InProcessCache
from shared.cache.registry import NodeRegistry
from shared.db import create_pool
from shared.events.models import Event
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
AUDIO = ROOT / "examples" / "audio"
MANIFEST = json.loads((AUDIO / "manifest.json").read_text())


# The simulated caller starts its next turn after this much agent silence. Generous, because
# these tests share two cores with other suites and a loaded CPU slows synthesis between sentences.
PATIENT = {"agent_done_silence_ms": 2500}


def clip(name: str, **options: Any) -> Say:
    """A caller utterance from examples/audio."""
    return Say(load_wav(AUDIO / MANIFEST[name]["file"]), label=name, **options)


def words(text: str) -> set[str]:
    return {w.strip(".,!?'\"").lower() for w in text.split()} - {""}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def models() -> Models:
    """Whisper tiny.en, Silero VAD and the TTS voice: loaded once for the whole session."""
    loaded = load_models(load_settings())
    yield loaded
    loaded.close()


@dataclass
class RunningNode:
    url: str
    http: str
    app: Any
    server: DrainingServer
    bus: EventBus
    settings: Settings
    registry: NodeRegistry

    @property
    def node(self) -> MediaNode:
        node: MediaNode = self.app.state.node
        return node

    def events(self, call_id: str | None = None) -> list[Event]:
        assert isinstance(self.bus, InProcessBus), "events() reads the in-process bus"
        topic = call_events_topic(self.bus.topic_prefix)
        out = [r.event() for r in self.bus.records(topic)]
        return [e for e in out if call_id is None or e.call_id == call_id]

    def dropped(self, reason: str) -> float:
        value = self.node.metrics.registry.get_sample_value(
            "parley_dropped_frames_total", {"reason": reason}
        )
        return value or 0.0

    async def wait_call_ended(self, call_id: str, timeout_s: float = 20.0) -> list[Event]:
        for _ in range(int(timeout_s * 20)):
            events = self.events(call_id)
            if any(e.type == "call.ended" for e in events):
                return events
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"call {call_id} never ended: {[e.type for e in self.events(call_id)]}"
        )


NodeFactory = Callable[..., "contextlib.AbstractAsyncContextManager[RunningNode]"]


@pytest.fixture
def start_node(models: Models, tmp_path: Path, request: pytest.FixtureRequest) -> NodeFactory:
    """Start a node: ``async with start_node(project=False, **setting_overrides) as node``.

    ``agents_from_db`` reads agents from PostgreSQL (their stored versions) instead of the
    example files; ``registry`` shares the node registry (and the calls' stream claims) with
    other nodes or the functions, as Redis does in production; ``dialogue=`` hands in a dialogue
    factory (the node closes it)."""

    @contextlib.asynccontextmanager
    async def start(
        project: bool = False,
        bus: EventBus | None = None,
        *,
        agents_from_db: bool = False,
        registry: NodeRegistry | None = None,
        dialogue: Any = None,
        **overrides: Any,
    ) -> AsyncIterator[RunningNode]:
        database_url = (
            request.getfixturevalue("database_url")
            if project or agents_from_db
            else overrides.pop("database_url", "postgresql://postgres@127.0.0.1:54329/unused")
        )
        settings = load_settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            **overrides,
        )
        bus = bus or InProcessBus(f"media-test-{uuid.uuid4().hex[:8]}")
        from media_nodes.dialogue.factory import AgentDialogueFactory

        pool = await create_pool(database_url, max_size=2) if agents_from_db else None
        factory = dialogue or AgentDialogueFactory(settings, pool=pool)
        registry = registry or NodeRegistry(InProcessCache())
        app = create_app(
            settings,
            models=models,
            dialogue=factory,
            bus=bus,
            project=project,
            metrics=MediaMetrics(),
            registry=registry,
        )
        port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            ws="websockets-sansio",
            lifespan="on",
            log_level="warning",
        )
        server = DrainingServer(config, app, settings.shutdown_grace_s)
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(600):
                if server.started or task.done():
                    break
                await asyncio.sleep(0.05)
            if not server.started:
                await task  # surfaces the startup error
                raise AssertionError("media node did not start")
            yield RunningNode(
                url=f"ws://127.0.0.1:{port}/twilio/stream",
                http=f"http://127.0.0.1:{port}",
                app=app,
                server=server,
                bus=bus,
                settings=settings,
                registry=registry,
            )
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
            await factory.aclose()
            if pool is not None:
                await pool.close()

    return start
