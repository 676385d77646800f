"""The admin Lambda: ``functions.admin.app.handler``."""

from fastapi import APIRouter, Depends

from functions.admin import agents, knowledge, numbers, privacy, tenants
from functions.common.app import create_app, lambda_handler
from functions.common.query import reject_unknown_query
from functions.webhooks import routes as webhooks
from shared.settings import EVERY_PROCESS, QDRANT, TRACING

# Uploaded knowledge documents are embedded into Qdrant; every request is a span.
NEEDS = EVERY_PROCESS | QDRANT | TRACING

router = APIRouter(dependencies=[Depends(reject_unknown_query)])
for part in (
    tenants.router,
    agents.router,
    numbers.router,
    knowledge.router,
    privacy.router,
    webhooks.router,
):
    router.include_router(part)

# The admin function also answers /docs and /openapi.json: the whole API's document.
app = create_app(router, title="Parley admin API", docs="merged")
handler = lambda_handler(app)
