"""The media node's ASGI app: ``WS /twilio/stream``, ``/healthz``, ``/readyz``, ``/metrics``.

Everything heavy is created in the lifespan (or handed in, as tests do to share loaded models):
the models, the dialogue factory, the event bus and, in embedded mode (in-process bus), the
projector that writes the call's events into PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from media_nodes.asr.engines import ASR_ENGINES
from media_nodes.dialogue.llm import LlmClient
from media_nodes.dialogue.nlu.slots import warm_parsers
from media_nodes.dialogue.protocol import DialogueFactory
from media_nodes.heartbeat import run_heartbeat
from media_nodes.memory import freeze_startup_objects
from media_nodes.metrics import MediaMetrics
from media_nodes.models import Models, load_models
from media_nodes.pipeline.node import MediaNode, default_node_id
from media_nodes.preparation import AgentPreparer
from media_nodes.recording.store import RecordingStore, create_store
from media_nodes.transports.twilio_stream import serve_twilio_stream
from media_nodes.transports.webrtc_routes import webrtc_routes
from media_nodes.tts.engines import TTS_ENGINES
from shared import tracing
from shared.agents.store import agent_activations
from shared.bus import EventBus, InProcessBus, create_bus
from shared.cache.registry import NodeRegistry
from shared.cache.streams import StreamClaims
from shared.cache.verdicts import MachineVerdicts
from shared.metrics import process_registry
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The node cannot start (database down, no dialogue engine); the message says why."""


def check_engines(settings: Settings) -> None:
    """Refuse a ``PARLEY_ASR_ENGINE`` or ``PARLEY_TTS_ENGINE`` that names no engine this node
    has (naming those it has) or one that cannot run here (saying why), before a model loads."""
    try:
        ASR_ENGINES.check(settings.asr_engine)
        TTS_ENGINES.check(settings.tts_engine)
    except (ASR_ENGINES.error, TTS_ENGINES.error) as exc:
        raise StartupError(str(exc)) from None


def load_dialogue_factory(settings: Settings, pool: Any) -> DialogueFactory:
    """The dialogue engine: agents from the database, or from ``agents_dir`` in dev."""
    from media_nodes.dialogue.factory import AgentDialogueFactory

    return AgentDialogueFactory(settings, pool=pool)


def create_media_bus(
    settings: Settings, pool: Any = None, *, registry: CollectorRegistry | None = None
) -> EventBus:
    """Kafka through the durable local spool in production (PII redacted per tenant before an
    event leaves the node; the spool's series on ``registry``); the in-process bus embedded."""
    if settings.kafka_bootstrap:
        from shared.privacy.tenants import TenantPrivacy

        redact = TenantPrivacy(pool).apply if pool else None
        return create_bus(settings, redact=redact, registry=registry)
    return create_bus(settings)


@dataclass
class EmbeddedProjector:
    """The embedded-mode projector (in-process bus -> PostgreSQL)."""

    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self, timeout_s: float = 10.0) -> None:
        self.stop.set()
        try:
            await asyncio.wait_for(self.task, timeout_s)
        except Exception as exc:
            log.error("projector did not finish cleanly: %r", exc)
            self.task.cancel()


async def _open_pool(settings: Settings) -> Any:
    from shared.db import DatabaseUnavailable, create_pool

    try:
        return await create_pool(settings.database_url, max_size=4)
    except DatabaseUnavailable as exc:
        raise StartupError(f"{exc} (start it with: scripts/services start postgres)") from None


def start_embedded_projector(bus: EventBus, pool: Any) -> EmbeddedProjector:
    # The consumer's own batch processor: embedded mode redacts per tenant and sets poison
    # events aside exactly as the deployed consumer does.
    from functions.consumer.processor import BatchProcessor
    from shared.db.projector import run_projector
    from shared.privacy.tenants import TenantPrivacy

    processor = BatchProcessor(pool, privacy=TenantPrivacy(pool))
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_projector(bus.consumer("media-node-projector"), processor.process, stop=stop),
        name="projector",
    )
    return EmbeddedProjector(stop=stop, task=task)


def create_app(
    settings: Settings | None = None,
    *,
    models: Models | None = None,
    dialogue: DialogueFactory | None = None,
    bus: EventBus | None = None,
    store: RecordingStore | None = None,
    project: bool | None = None,
    metrics: MediaMetrics | None = None,
    registry: NodeRegistry | None = None,
) -> Starlette:
    """The app. Anything not handed in is built from ``settings`` at startup."""
    cfg = settings or get_settings()
    if models is None:  # the engines named in the settings must run here before anything loads
        check_engines(cfg)
    tracing.configure(cfg, "parley-media-node")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own_models = models is None
        # The slot parsers load their data on first use (phone-number metadata, number words):
        # load it now, beside the models, so no caller's turn waits for it.
        parsers = asyncio.create_task(asyncio.to_thread(warm_parsers))
        loaded = models if models is not None else await asyncio.to_thread(load_models, cfg)
        await parsers
        pool: Any = None
        if bus is None and cfg.kafka_bootstrap:
            pool = await _open_pool(cfg)  # tenants' privacy settings, read by the producer
        # The process's one registry: the node's series, the spool's and the process's own.
        node_metrics = metrics or MediaMetrics(process_registry())
        event_bus = bus or create_media_bus(cfg, pool, registry=node_metrics.registry)
        await event_bus.start()
        projector: EmbeddedProjector | None = None
        own_factory: Any = None
        try:
            projecting = project if project is not None else isinstance(event_bus, InProcessBus)
            if (projecting or dialogue is None) and pool is None:
                pool = await _open_pool(cfg)
            if projecting:
                projector = start_embedded_projector(event_bus, pool)
            factory = dialogue
            if factory is None:
                factory = own_factory = load_dialogue_factory(cfg, pool)
            if registry is not None:
                node_registry = registry
            else:
                from shared.cache.factory import create_cache

                node_registry = NodeRegistry(create_cache(cfg), ttl_s=cfg.node_registry_ttl_s)
            node = MediaNode(
                settings=cfg,
                asr=loaded.asr,
                vad=loaded.vad,
                end_of_turn=loaded.end_of_turn,
                voice=loaded.voice,
                dialogue=factory,
                bus=event_bus,
                store=store or create_store(cfg.recording_store, cfg.data_dir),
                metrics=node_metrics,
                node_id=cfg.node_id or default_node_id(),
                streams=StreamClaims(node_registry.cache),
                verdicts=MachineVerdicts(node_registry.cache),
            )
            llm = getattr(factory, "llm", None)
            if isinstance(llm, LlmClient):  # its latency and failures, on this node's metrics
                llm.observer = node.metrics
            agents = AgentPreparer(node)
            try:
                await agents.prepare("default", cfg.default_agent)
            except Exception as exc:  # a missing default agent must not stop the node
                log.warning("default agent %s not prepared: %s", cfg.default_agent, exc)
            activations: asyncio.Task[None] | None = None
            if pool is not None:  # agents live in this database: prepare each one activated
                listening = asyncio.Event()
                activations = asyncio.create_task(
                    agents.follow(agent_activations(cfg.database_url, listening=listening)),
                    name="agent-activations",
                )
                with contextlib.suppress(TimeoutError):  # the database retries on its own
                    await asyncio.wait_for(listening.wait(), 10)
            app.state.node = node
            app.state.agents = agents
            stop_heartbeat = asyncio.Event()
            heartbeat = asyncio.create_task(run_heartbeat(node, node_registry, stop_heartbeat))
            if own_models:  # this process is the node (tests share models between many apps)
                freeze_startup_objects()
            yield
            node.draining = True
            if activations is not None:
                activations.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await activations
            await agents.aclose()
            stop_heartbeat.set()
            await heartbeat
            for call in list(node.calls):
                await call.shut_down()
            for _ in range(50):
                if not node.calls:
                    break
                await asyncio.sleep(0.1)
        finally:
            if projector is not None:
                await projector.close()
            if own_factory is not None:
                await own_factory.aclose()
            if pool is not None:
                await pool.close()
            await event_bus.stop()
            if own_models:
                loaded.close()

    async def twilio_stream(websocket: WebSocket) -> None:
        await serve_twilio_stream(websocket, websocket.app.state.node)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        node: MediaNode | None = getattr(request.app.state, "node", None)
        if node is None:
            return JSONResponse({"ready": False, "reason": "starting"}, status_code=503)
        body = {
            "ready": node.accepting(),
            "draining": node.draining,
            "active_calls": len(node.calls),
            "capacity_left": node.capacity_left,
            "asr_device": node.asr.device,
            "tts_engine": node.voice.engine.name,
        }
        return JSONResponse(body, status_code=200 if node.accepting() else 503)

    async def metrics_endpoint(request: Request) -> Response:
        node: MediaNode | None = getattr(request.app.state, "node", None)
        if node is None:
            return Response(status_code=503)
        # One registry: the node's series, the event spool's and the process's (CPU, GC).
        body = generate_latest(node.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            WebSocketRoute("/twilio/stream", twilio_stream),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *webrtc_routes(),
        ],
        lifespan=lifespan,
    )
