"""Every function in one ASGI app for local use: ``parley api serve --port P``.

Same routers, error shape and middleware as the Lambdas; the OpenAPI document of this app is the
one written to ``functions/openapi.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from functions.admin.app import router as admin_router
from functions.analytics.app import router as analytics_router
from functions.common.app import create_app
from functions.common.runtime import runtime
from functions.transfer.app import router as transfer_router
from functions.voice.routes import router as voice_router

# (Lambda module, router): infra (#8) deploys one Lambda per module behind the same API.
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
