"""Every function in one ASGI app for local use: ``parley api serve --port P``.

Same routers, error shape and middleware as the Lambdas; the OpenAPI document of this app is the
one written to ``functions/openapi.json``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from fastapi import FastAPI

from functions.admin.app import router as admin_router
from functions.analytics.app import router as analytics_router
from functions.common.app import create_app
from functions.common.runtime import runtime
from functions.transfer.app import router as transfer_router
from functions.voice.routes import router as voice_router

# (Lambda module, router): infra deploys one Lambda per module behind the same API, so the
# local server and AWS answer the same routes.
FUNCTIONS = {
    "functions.voice.app": voice_router,
    "functions.admin.app": admin_router,
    "functions.analytics.app": analytics_router,
    "functions.transfer.app": transfer_router,
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await runtime().close()  # the pool and Redis client belong to this server's loop


def create_local_app() -> FastAPI:
    return create_app(*FUNCTIONS.values(), lifespan=_lifespan, docs="own")


app = create_local_app()


@contextmanager
def serving_in_thread(port: int) -> Iterator[str]:
    """``parley api serve`` on a thread of this process (tests, benchmarks): yields its URL."""
    import uvicorn

    config = uvicorn.Config(
        create_local_app(), host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the local API server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
