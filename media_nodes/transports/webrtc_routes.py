"""The media node's WebRTC routes: the signalling socket and the browser softphone.

- ``WS /webrtc/signal`` - see :mod:`media_nodes.transports.webrtc_signal`;
- ``GET /phone`` - the softphone page (``?token=`` passes a session token to the socket;
  ``?agent=`` preselects an agent), with its script and stylesheet under ``/phone/``;
- ``GET /phone/agents`` - the agents a development node can call (from ``agents_dir``).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from media_nodes.transports.webrtc_signal import PeerRegistry, serve_webrtc_signal
from shared.agents.loader import AgentDefinitionError, agent_file_in, load_agent_text
from shared.settings import Settings

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# Pages can be framed by nobody, and run only their own script.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "media-src 'self' blob:; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def peer_registry(app: Starlette) -> PeerRegistry:
    """The app's live peer connections (created on first use)."""
    registry: PeerRegistry | None = getattr(app.state, "webrtc_peers", None)
    if registry is None:
        registry = PeerRegistry()
        app.state.webrtc_peers = registry
    return registry


def list_agents(settings: Settings) -> list[dict[str, str]]:
    """Agent ids and names defined under ``agents_dir`` (invalid definitions are left out)."""
    folder = settings.agents_dir
    agents = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        path = agent_file_in(entry) if entry.is_dir() else None
        if path is None:
            continue
        try:
            definition = load_agent_text(path.read_text(encoding="utf-8"), source=str(path))
        except (AgentDefinitionError, OSError, UnicodeDecodeError):
            continue
        agents.append({"id": definition.id, "name": definition.name})
    return agents


async def signal(websocket: WebSocket) -> None:
    app = websocket.app
    await serve_webrtc_signal(websocket, app.state.node, peer_registry(app))


async def phone_page(request: Request) -> Response:
    return FileResponse(WEB_DIR / "phone.html", media_type="text/html", headers=PAGE_HEADERS)


async def phone_script(request: Request) -> Response:
    return FileResponse(WEB_DIR / "phone.js", media_type="text/javascript", headers=PAGE_HEADERS)


async def phone_style(request: Request) -> Response:
    return FileResponse(WEB_DIR / "phone.css", media_type="text/css", headers=PAGE_HEADERS)


async def agents(request: Request) -> Response:
    node = getattr(request.app.state, "node", None)
    if node is None:
        return JSONResponse({"error": "starting"}, status_code=503)
    settings: Settings = node.settings
    return JSONResponse({"agents": list_agents(settings), "default": settings.default_agent})


def webrtc_routes() -> list[BaseRoute]:
    return [
        WebSocketRoute("/webrtc/signal", signal),
        Route("/phone", phone_page),
        Route("/phone/phone.js", phone_script),
        Route("/phone/phone.css", phone_style),
        Route("/phone/agents", agents),
    ]
