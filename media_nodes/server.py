"""Run the media node under uvicorn, draining calls on SIGTERM instead of cutting them.

First SIGTERM (or Ctrl-C): stop taking calls (``/readyz`` turns 503 so the load balancer moves
on, new streams are refused), let active calls finish for up to ``shutdown_grace_s``, then hang
up whatever is left (reason ``shutdown``, transcripts saved) and exit 0. A second signal exits now.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from media_nodes.app import StartupError, create_app
from media_nodes.pipeline.node import MediaNode
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

HANGUP_WAIT_S = 10.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette, grace_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._grace_s = grace_s
        self.drain_started: float | None = None
        self._hangups: asyncio.Task[None] | None = None

    def _node(self) -> MediaNode | None:
        return getattr(self._app.state, "node", None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is None and sig in (signal.SIGTERM, signal.SIGINT):
            self.drain_started = time.monotonic()
            node = self._node()
            if node is not None:
                node.draining = True
                log.info(
                    "draining: %d active call(s), grace %.0f s", len(node.calls), self._grace_s
                )
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_started is not None and not self.should_exit:
            node = self._node()
            waited = time.monotonic() - self.drain_started
            if node is None or not node.calls:
                self.should_exit = True
            elif waited >= self._grace_s and self._hangups is None:
                log.warning("grace period over: hanging up %d call(s)", len(node.calls))
                self._hangups = asyncio.create_task(self._hang_up_all(node))
            elif waited >= self._grace_s + HANGUP_WAIT_S:
                self.should_exit = True
        return await super().on_tick(counter)

    @staticmethod
    async def _hang_up_all(node: MediaNode) -> None:
        await asyncio.gather(*(call.shut_down() for call in list(node.calls)))


def build_server(
    host: str, port: int, settings: Settings | None = None, app: Starlette | None = None
) -> DrainingServer:
    cfg = settings or get_settings()
    application = app or create_app(cfg)
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        ws="websockets-sansio",
        lifespan="on",
        log_level=cfg.log_level.lower(),
        timeout_graceful_shutdown=int(HANGUP_WAIT_S),
        access_log=False,
    )
    return DrainingServer(config, application, cfg.shutdown_grace_s)


def preflight(settings: Settings) -> None:
    """Fail fast, with a clear message, on what would stop the node at startup."""
    from media_nodes.app import _open_pool

    async def database() -> None:
        pool = await _open_pool(settings)
        await pool.close()

    asyncio.run(database())


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    """Serve until drained; returns normally (exit 0) after a graceful shutdown."""
    cfg = settings or get_settings()
    server = build_server(host, port, cfg)  # refuses engines that cannot run, before the database
    preflight(cfg)
    server.run()
    if not server.started:
        raise StartupError("the media node did not start (see the log above)")
